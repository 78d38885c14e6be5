package archive_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/tidemark/tidemark/archive"
)

// Literal-heavy data — text with few repeats but a skewed alphabet — is
// where klauspost's fast levels stored blocks raw (issue #17). These
// corpora are rows in the MySQL row format's shape (docs/format.md),
// deterministic so the sizes compared are the same on every run.

// md5Rows: an integer key and the md5 hex of it, as `md5(seq)` tables hold.
func md5Rows(size int) []byte {
	var b []byte
	for i := int64(1); len(b) < size; i++ {
		s := md5.Sum(fmt.Appendf(nil, "%d", i))
		b = append(b, 1, 0)
		b = binary.AppendVarint(b, i)
		b = binary.AppendUvarint(b, 32)
		b = hex.AppendEncode(b, s[:])
	}
	return b[:size]
}

// sysbenchRows: sysbench's sbtest shape, c and pad made of random 11-digit
// groups joined by '-'.
func sysbenchRows(size int) []byte {
	r := rand.New(rand.NewPCG(17, 1))
	digits := func(b []byte, groups int) []byte {
		b = binary.AppendUvarint(b, uint64(groups*12-1))
		for g := range groups {
			if g > 0 {
				b = append(b, '-')
			}
			for range 11 {
				b = append(b, byte('0'+r.IntN(10)))
			}
		}
		return b
	}
	var b []byte
	for i := int64(1); len(b) < size; i++ {
		b = append(b, 1, 0)
		b = binary.AppendVarint(b, i)
		b = binary.AppendVarint(b, int64(r.IntN(1_000_000)))
		b = digits(b, 10)
		b = digits(b, 5)
	}
	return b[:size]
}

// referenceSize is what klauspost's SpeedDefault, literals entropy-coded,
// makes of data cut into pieces of n bytes (the nearest to zstd -3; C zstd
// -1 does as well or better on these corpora).
func referenceSize(t *testing.T, data []byte, n int) int {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithAllLitEntropyCompression(true),
		zstd.WithEncoderCRC(false), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	total := 0
	for off := 0; off < len(data); off += n {
		total += len(enc.EncodeAll(data[off:min(off+n, len(data))], nil))
	}
	return total
}

// TestLiteralHeavyDataCompresses fails when a repository stores literal-heavy
// rows above 1.05× of the reference, through both write paths: chunks of a
// base backup (one EncodeAll per chunk, into packs) and streamed objects
// (WAL, binlog and oplog segments). Sizes only: speed is the bench's
// business (`go run ./bench -suite compress`).
func TestLiteralHeavyDataCompresses(t *testing.T) {
	const size = 4 << 20
	ctx := context.Background()
	corpora := []struct {
		name string
		data []byte
	}{{"md5 hex rows", md5Rows(size)}, {"sysbench rows", sysbenchRows(size)}}
	for _, level := range []int{0, 1, 2, 3, 4} {
		r, _ := newRepo(t, archive.InitOptions{NoEncrypt: true, Level: level})
		for i, c := range corpora {
			t.Run(fmt.Sprintf("level %d/%s", level, c.name), func(t *testing.T) {
				_, st := writeFile(t, r, c.data, archive.Aligned)
				if st.NewPlain != size {
					t.Fatalf("stored %d new plaintext bytes, want %d (corpus deduplicated?)", st.NewPlain, size)
				}
				checkRatio(t, "chunks", st.NewStored, referenceSize(t, c.data, archive.AlignedChunkSize))

				ps, err := r.Put(ctx, fmt.Sprintf("blob/%d", i), archive.KindBlob, bytes.NewReader(c.data))
				if err != nil {
					t.Fatal(err)
				}
				checkRatio(t, "stream", ps.Stored, referenceSize(t, c.data, len(c.data)))
			})
		}
	}
}

func checkRatio(t *testing.T, path string, stored int64, ref int) {
	t.Helper()
	ratio := float64(stored) / float64(ref)
	t.Logf("%s: stored %d bytes, reference %d (%.3f×)", path, stored, ref, ratio)
	if ratio > 1.05 {
		t.Errorf("%s: stored %d bytes, %.3f× the reference's %d (limit 1.05×): literals left raw?", path, stored, ratio, ref)
	}
}

// TestCatalogCarriesCompressionRatio: the ratio a backup achieved is in its
// unencrypted catalog entry, so a host with only public keys (status, the
// agent's metrics) can show it.
func TestCatalogCarriesCompressionRatio(t *testing.T) {
	ctx := context.Background()
	id := identity(t)
	r, dir := newRepo(t, archive.InitOptions{Recipients: []string{id.Recipient().String()}})
	refs, st := writeFile(t, r, md5Rows(2<<20), archive.Aligned)
	m := &archive.Manifest{ID: archive.NewManifestID(timeNow()), Engine: "test", Stats: st,
		Files: []archive.FileEntry{{Path: "f", Size: 2 << 20, Chunks: refs}}}
	if err := r.CommitManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	writer, err := reopen(t, dir, archive.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	sums, err := writer.Backups(ctx)
	if err != nil || len(sums) != 1 {
		t.Fatalf("backups = %v, %v", sums, err)
	}
	s := sums[0]
	if s.NewPlain != 2<<20 || s.NewStored != st.NewStored || s.CompressionRatio() != st.CompressionRatio() {
		t.Fatalf("summary plain %d stored %d ratio %.3f; stats plain %d stored %d ratio %.3f",
			s.NewPlain, s.NewStored, s.CompressionRatio(), st.NewPlain, st.NewStored, st.CompressionRatio())
	}
	// md5 hex compresses about 1.7:1; encryption adds a few hundred bytes.
	if s.CompressionRatio() < 1.5 {
		t.Errorf("compression ratio %.3f, want ≥ 1.5 on md5 hex rows", s.CompressionRatio())
	}
	if (archive.BackupSummary{NewStored: 10}).CompressionRatio() != 0 {
		t.Error("a summary without new_plain_bytes must report ratio 0 (unknown)")
	}
}
