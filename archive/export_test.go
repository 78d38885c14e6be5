package archive

// SetListPageSize makes an object store list in pages of n names, so the
// conformance suite crosses page boundaries without thousands of objects.
func SetListPageSize(s Store, n int) {
	switch s := s.(type) {
	case *S3Store:
		s.pageSize = int32(n)
	case *GCSStore:
		s.pageSize = n
	case *AzureStore:
		s.pageSize = int32(n)
	}
}
