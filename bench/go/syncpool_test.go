// Go's sync.Pool on the same patterns as bench/pool_bench.cpp, for the side-by-side table in
// docs/benchmarks.md. Run with bench/run-pool-bench (GOPROXY=off: no dependencies).
package syncpool

import (
	"sync"
	"testing"
)

const size = 4096

func newPool() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, size); return &b }}
}

// One Get+Put pair per iteration on one goroutine (the private-slot hit).
func BenchmarkGetPut(b *testing.B) {
	p := newPool()
	for i := 0; i < b.N; i++ {
		x := p.Get().(*[]byte)
		p.Put(x)
	}
}

// Go's BenchmarkPoolOverflow pattern on one goroutine: 100 Puts then 100 Gets; ns/op is per pair.
func BenchmarkOverflow(b *testing.B) {
	p := newPool()
	held := make([]*[]byte, 100)
	for i := range held {
		held[i] = p.Get().(*[]byte)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += 100 {
		for _, x := range held {
			p.Put(x)
		}
		for j := range held {
			held[j] = p.Get().(*[]byte)
		}
	}
}

// Go's BenchmarkPoolStarvation with New: 67 Puts then 100 Gets per round, so 33 Gets per round call
// New (a fresh 4 KiB slice). b.RunParallel, as in Go's own benchmark: ns/op is per round of 100 Gets
// (divide by 100 for the figure per Get beside bench/pool_bench.cpp's BM_pool_starvation).
func BenchmarkStarvation(b *testing.B) {
	p := newPool()
	b.RunParallel(func(pb *testing.PB) {
		held := make([]*[]byte, 100)
		for i := range held {
			held[i] = p.Get().(*[]byte)
		}
		for pb.Next() {
			for _, x := range held[:67] {
				p.Put(x)
			}
			for j := range held {
				held[j] = p.Get().(*[]byte)
			}
		}
	})
}

// Get on this goroutine, Put on another, through a buffered channel; ns/op is per buffer.
func BenchmarkCrossThread(b *testing.B) {
	p := newPool()
	ch := make(chan *[]byte, 256)
	done := make(chan struct{})
	go func() {
		for x := range ch {
			p.Put(x)
		}
		close(done)
	}()
	for i := 0; i < b.N; i++ {
		ch <- p.Get().(*[]byte)
	}
	close(ch)
	<-done
}
