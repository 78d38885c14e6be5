package retry

import (
	"bytes"
	"io"
	"os"
)

// spoolMemory is how much of a Put's data is kept in memory; beyond it the
// data spills to a temporary file, so a retryable Put of a large object
// does not hold it all in memory.
const spoolMemory = 4 << 20

// spool keeps the bytes a Put's first attempt sent, so a retry can send
// them again.
type spool struct {
	mem  bytes.Buffer
	file *os.File
	n    int64
	err  error
}

func newSpool() *spool { return &spool{} }

func (s *spool) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.file == nil && s.mem.Len()+len(p) > spoolMemory {
		f, err := os.CreateTemp("", "tidemark-put-*")
		if err == nil {
			os.Remove(f.Name()) // unnamed: gone with the process, whatever happens
			_, err = f.Write(s.mem.Bytes())
		}
		if err != nil {
			s.err = err
			return 0, err
		}
		s.file = f
		s.mem = bytes.Buffer{}
	}
	var err error
	if s.file != nil {
		_, err = s.file.Write(p)
	} else {
		s.mem.Write(p)
	}
	if err != nil {
		s.err = err
		return 0, err
	}
	s.n += int64(len(p))
	return len(p), nil
}

// reader reads everything written so far from the start.
func (s *spool) reader() (io.Reader, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.file == nil {
		return bytes.NewReader(s.mem.Bytes()), nil
	}
	return io.NewSectionReader(s.file, 0, s.n), nil
}

func (s *spool) close() {
	if s.file != nil {
		s.file.Close()
	}
}
