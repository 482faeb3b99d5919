// Package cutoffbench holds the Go side of cutoff's side-by-side benchmarks: Go's `context`
// and Go timers, measured on the same machine as the Rust criterion groups. Standard
// library only; it builds offline. Run it through `benches/go.sh` (which also sets the
// flags below); the Rust report generator parses its output, so the names are stable.
//
// Every benchmark loops over b.N (or pb.Next in RunParallel), calls b.ReportAllocs(), and
// keeps its setup outside the timer. go.sh runs them with `-cpu 2`, so every name below
// appears in the output with the suffix "-2" (GOMAXPROCS), e.g. "BenchmarkErrLive-2".
//
// The seed's five scenarios (plus TimeoutFirstTimerStop): a goroutine computes a*a and sends
// it on a buffered channel; the benchmark goroutine races it against a timeout with select.
// One op = one whole race (create the timeout, spawn, select, clean up). The context rows
// hang off context.Background(), as the seed's did: Go's cheapest case (no parent
// registration). The Rust side (benches/benches/seed.rs) hangs its deadline under a live
// cancellable root, so any difference is not in Go's disfavour.
//
//	BenchmarkResultFirstContext     context.WithTimeout(Background, 200ms) + defer-style cancel, <-ctx.Done()
//	BenchmarkResultFirstTimeAfter   <-time.After(200ms)
//	BenchmarkResultFirstTimerStop   time.NewTimer(200ms), <-t.C, t.Stop()
//	BenchmarkTimeoutFirstContext    as ResultFirstContext, deadline 1ms, the work sleeps 5ms first
//	BenchmarkTimeoutFirstTimeAfter  as ResultFirstTimeAfter, 1ms, the work sleeps 5ms first
//	BenchmarkTimeoutFirstTimerStop  as ResultFirstTimerStop, 1ms, the work sleeps 5ms first
//
// Context primitives (one op = what the name says):
//
//	BenchmarkWithCancelFromCancelable   WithCancel(p) + cancel(), p = WithCancel(Background)
//	BenchmarkWithTimeoutFromBackground  WithTimeout(Background, 200ms) + cancel()
//	BenchmarkWithTimeoutFromCancelable  WithTimeout(p, 200ms) + cancel(), p cancellable
//	BenchmarkAfterFuncStop              time.AfterFunc(200ms, f) + Stop(): the timer part of WithTimeout alone
//	BenchmarkErrLive                    ctx.Err() on a live WithCancel child of a cancellable parent
//	BenchmarkParallelWithCancelShared   RunParallel (2 goroutines at -cpu 2): WithCancel(p) + cancel(), one shared p
//	BenchmarkParallelWithTimeoutShared  RunParallel: WithTimeout(p, 200ms) + cancel(), one shared p
//
// In the Parallel rows ns/op is wall time divided by the ops of *all* goroutines (Go's
// convention): total throughput = 1e9 / (ns/op) ops/s. (The Rust 2-thread groups report wall
// time per op of *each* thread instead: total throughput = threads / time.)
//
// Fan-out and deep chain (one op = one cancel; building the tree, and a runtime.GC(), run
// with the timer stopped). They also report a custom metric, the per-unit time:
//
//	BenchmarkFanOutCancel100000    cancel a WithCancel parent with 100,000 live WithCancel children  (metric "ns/child")
//	BenchmarkDeepChainCancel10000  cancel the root of a 10,000-deep WithCancel chain                 (metric "ns/node")
//
// Memory per live context is TestMem in mem_test.go (lines "MEM ...").
package cutoffbench

import (
	"context"
	"runtime"
	"testing"
	"time"
)

const (
	// The seed's result-first deadline: the result always arrives long before it.
	resultFirstDeadline = 200 * time.Millisecond
	// Timeout-first: a short deadline, and work that sleeps well past it (so the run stays
	// quick: an op waits for the deadline only; timers fire on millisecond ticks, so the
	// margin is wide enough that the two never fire together, even late).
	timeoutFirstDeadline = time.Millisecond
	timeoutFirstWork     = 5 * time.Millisecond
	// The primitives' timeout (never reached: the context is cancelled at once).
	primitiveTimeout = 200 * time.Millisecond

	fanOutChildren = 100_000
	chainDepth     = 10_000
)

// sink keeps results observable so nothing is optimised away.
var sink int

func work(a int, sleep time.Duration, ch chan<- int) {
	if sleep > 0 {
		time.Sleep(sleep)
	}
	ch <- a * a
}

func seedContext(b *testing.B, deadline, sleep time.Duration) {
	b.ReportAllocs()
	got := 0
	for i := 0; i < b.N; i++ {
		func() {
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			ch := make(chan int, 1) // buffered: a late worker never blocks (no leak)
			go work(i, sleep, ch)
			select {
			case r := <-ch:
				sink += r
				got++
			case <-ctx.Done():
			}
		}()
	}
	checkOutcome(b, got, sleep)
}

func seedTimeAfter(b *testing.B, deadline, sleep time.Duration) {
	b.ReportAllocs()
	got := 0
	for i := 0; i < b.N; i++ {
		ch := make(chan int, 1)
		go work(i, sleep, ch)
		select {
		case r := <-ch:
			sink += r
			got++
		case <-time.After(deadline):
		}
	}
	checkOutcome(b, got, sleep)
}

func seedTimerStop(b *testing.B, deadline, sleep time.Duration) {
	b.ReportAllocs()
	got := 0
	for i := 0; i < b.N; i++ {
		t := time.NewTimer(deadline)
		ch := make(chan int, 1)
		go work(i, sleep, ch)
		select {
		case r := <-ch:
			sink += r
			got++
		case <-t.C:
		}
		t.Stop()
	}
	checkOutcome(b, got, sleep)
}

// checkOutcome fails the benchmark if most races were won by the wrong side: a result-first
// run where the 200 ms timers fired, or a timeout-first run where the 5 ms sleepers beat the
// 1 ms deadline, would be measuring something else. Stragglers are tolerated (on a loaded
// machine a goroutine or a timer can run late).
func checkOutcome(b *testing.B, got int, sleep time.Duration) {
	lost := b.N - got
	if sleep > 0 {
		lost = got
	}
	if 2*lost > b.N {
		b.Fatalf("%d of %d races were won by the wrong side (sleep %v)", lost, b.N, sleep)
	}
}

func BenchmarkResultFirstContext(b *testing.B) { seedContext(b, resultFirstDeadline, 0) }
func BenchmarkResultFirstTimeAfter(b *testing.B) {
	seedTimeAfter(b, resultFirstDeadline, 0)
}
func BenchmarkResultFirstTimerStop(b *testing.B) {
	seedTimerStop(b, resultFirstDeadline, 0)
}
func BenchmarkTimeoutFirstContext(b *testing.B) {
	seedContext(b, timeoutFirstDeadline, timeoutFirstWork)
}
func BenchmarkTimeoutFirstTimeAfter(b *testing.B) {
	seedTimeAfter(b, timeoutFirstDeadline, timeoutFirstWork)
}
func BenchmarkTimeoutFirstTimerStop(b *testing.B) {
	seedTimerStop(b, timeoutFirstDeadline, timeoutFirstWork)
}

func BenchmarkWithCancelFromCancelable(b *testing.B) {
	parent, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, cancel := context.WithCancel(parent)
		cancel()
	}
}

func BenchmarkWithTimeoutFromBackground(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_, cancel := context.WithTimeout(context.Background(), primitiveTimeout)
		cancel()
	}
}

func BenchmarkWithTimeoutFromCancelable(b *testing.B) {
	parent, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, cancel := context.WithTimeout(parent, primitiveTimeout)
		cancel()
	}
}

// BenchmarkAfterFuncStop is the runtime-timer part of WithTimeout on its own:
// time.AfterFunc(200ms, f) + Stop() (what a timerCtx arms and disarms).
func BenchmarkAfterFuncStop(b *testing.B) {
	f := func() {}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		t := time.AfterFunc(primitiveTimeout, f)
		t.Stop()
	}
}

func BenchmarkErrLive(b *testing.B) {
	parent, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if ctx.Err() != nil {
			b.Fatal("live context reports an error")
		}
	}
}

func BenchmarkParallelWithCancelShared(b *testing.B) {
	parent, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, cancel := context.WithCancel(parent)
			cancel()
		}
	})
}

func BenchmarkParallelWithTimeoutShared(b *testing.B) {
	parent, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, cancel := context.WithTimeout(parent, primitiveTimeout)
			cancel()
		}
	})
}

func BenchmarkFanOutCancel100000(b *testing.B) {
	b.ReportAllocs()
	b.StopTimer()
	b.ResetTimer()
	cancels := make([]context.CancelFunc, fanOutChildren)
	for i := 0; i < b.N; i++ {
		parent, cancel := context.WithCancel(context.Background())
		for j := range cancels {
			_, cancels[j] = context.WithCancel(parent)
		}
		runtime.GC()
		b.StartTimer()
		cancel()
		b.StopTimer()
		if parent.Err() == nil {
			b.Fatal("parent not cancelled")
		}
	}
	clear(cancels)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/fanOutChildren, "ns/child")
}

func BenchmarkDeepChainCancel10000(b *testing.B) {
	b.ReportAllocs()
	b.StopTimer()
	b.ResetTimer()
	cancels := make([]context.CancelFunc, chainDepth)
	for i := 0; i < b.N; i++ {
		root, cancel := context.WithCancel(context.Background())
		ctx := root
		for j := range cancels {
			ctx, cancels[j] = context.WithCancel(ctx)
		}
		runtime.GC()
		b.StartTimer()
		cancel()
		b.StopTimer()
		if ctx.Err() == nil {
			b.Fatal("leaf not cancelled")
		}
	}
	clear(cancels)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/chainDepth, "ns/node")
}
