package forward

import "sync"

// copyBufferSize is the buffer httputil.ReverseProxy copies response bodies with (its
// own default size).
const copyBufferSize = 32 << 10

// bufferPool lends ReverseProxy its copy buffers. Without one, ReverseProxy allocates a
// fresh 32 KB buffer for every response body: the profile of the benchmark mesh showed
// that as two thirds of the proxy's allocated bytes per request (docs/BENCHMARKS.md).
type bufferPool struct{ pool *sync.Pool }

func newBufferPool() bufferPool {
	return bufferPool{pool: &sync.Pool{New: func() any {
		b := make([]byte, copyBufferSize)
		return &b
	}}}
}

// Get returns a buffer of copyBufferSize bytes.
func (p bufferPool) Get() []byte { return *p.pool.Get().(*[]byte) }

// Put takes a buffer back; buffers of another size (none are made) are dropped.
func (p bufferPool) Put(b []byte) {
	if cap(b) != copyBufferSize {
		return
	}
	b = b[:copyBufferSize]
	p.pool.Put(&b)
}
