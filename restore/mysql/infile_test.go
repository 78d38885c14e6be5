package mysql

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// unescapeField reads a field back as the server's LOAD DATA does with
// ESCAPED BY '\\': \\, \t, \n and \0 stand for their bytes.
func unescapeField(t *testing.T, f []byte) []byte {
	t.Helper()
	var out []byte
	for i := 0; i < len(f); i++ {
		c := f[i]
		switch c {
		case '\t', '\n':
			t.Fatalf("field %q holds a raw terminator at %d", f, i)
		case '\\':
			i++
			if i == len(f) {
				t.Fatalf("field %q ends in a lone backslash", f)
			}
			c = map[byte]byte{'\\': '\\', 't': '\t', 'n': '\n', '0': 0}[f[i]]
			if c == 0 && f[i] != '0' {
				t.Fatalf("field %q: unexpected escape \\%c", f, f[i])
			}
		}
		out = append(out, c)
	}
	return out
}

// Every byte value and random strings dense in the special bytes come back
// exactly, whichever path (no escapes, some) escape takes.
func TestEscapeRoundTrip(t *testing.T) {
	var cases [][]byte
	for c := range 256 {
		cases = append(cases, []byte{byte(c)}, []byte{'a', byte(c), 'b'})
	}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab-\\\t\n\x00\r'\"N")
	for range 2000 {
		v := make([]byte, r.IntN(40))
		for i := range v {
			v[i] = alphabet[r.IntN(len(alphabet))]
		}
		cases = append(cases, v)
	}
	cases = append(cases, nil, []byte("35137477456-77040492162"), []byte(`\N`))
	for _, v := range cases {
		var b bytes.Buffer
		escape(&b, v)
		if got := unescapeField(t, b.Bytes()); !bytes.Equal(got, v) {
			t.Fatalf("escape(%q) = %q, which reads back as %q", v, b.Bytes(), got)
		}
	}
}

func BenchmarkEscapeSysbench(b *testing.B) {
	v := []byte("35137477456-77040492162-79790031517-67828684176-99773329402-95380597556-77583002649-01773223655-76117113395-75265899090")
	var buf bytes.Buffer
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		buf.Reset()
		escape(&buf, v)
	}
}
