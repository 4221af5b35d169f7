package forward

import "math/rand/v2"

// newRequestID returns a random UUID version 4, as Envoy generates for x-request-id.
// The bits come from the runtime's per-thread ChaCha8 generator (math/rand/v2's
// top-level functions: no lock, no syscall), not crypto/rand: a request id must be
// unique, not secret. One allocation (the string) instead of eight.
func newRequestID() string {
	hi, lo := rand.Uint64(), rand.Uint64()
	hi = hi&^0xf000 | 0x4000       // version 4: high nibble of byte 6
	lo = lo&^(0xc0<<56) | 0x80<<56 // variant 10xx: top bits of byte 8
	var b [36]byte
	putHex(b[0:8], hi>>32)
	b[8] = '-'
	putHex(b[9:13], hi>>16)
	b[13] = '-'
	putHex(b[14:18], hi)
	b[18] = '-'
	putHex(b[19:23], lo>>48)
	b[23] = '-'
	putHex(b[24:36], lo)
	return string(b[:])
}

// putHex writes the low len(dst) hex digits of v into dst, most significant first.
func putHex(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[v&0xf]
		v >>= 4
	}
}
