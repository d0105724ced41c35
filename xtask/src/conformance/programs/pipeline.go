// A goroutine pipeline, built with `go build` inside the emulated userland and run
// there (cargo xtask conformance, workload `go`): golang/go#70329 is Go 1.23 hanging
// under qemu-user. Producers, a pool of workers and a collector talk over channels;
// a goroutine spins without calls, so that the garbage collector must preempt it
// asynchronously (a signal, SIGURG, delivered by the emulator); a timer bounds it.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

func collatz(n int) int {
	steps := 0
	for n != 1 {
		if n%2 == 0 {
			n /= 2
		} else {
			n = 3*n + 1
		}
		steps++
	}
	return steps
}

func main() {
	const workers = 8
	const items = 20000
	jobs := make(chan int)
	results := make(chan int, 64)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				results <- collatz(n)
			}
		}()
	}
	go func() {
		for i := 1; i <= items; i++ {
			jobs <- i
		}
		close(jobs)
	}()
	go func() {
		wg.Wait()
		close(results)
	}()

	stop := make(chan struct{})
	spun := make(chan int)
	go func() {
		x := 0
		for {
			select {
			case <-stop:
				spun <- x
				return
			default:
			}
			for i := 0; i < 1000000; i++ {
				x += i & 1
			}
		}
	}()

	sum := 0
	for r := range results {
		sum += r
	}
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	close(stop)
	select {
	case <-spun:
	case <-time.After(60 * time.Second):
		fmt.Println("pipeline FAILED: the spinning goroutine did not stop")
		os.Exit(1)
	}

	want := 0
	for i := 1; i <= items; i++ {
		want += collatz(i)
	}
	if sum != want {
		fmt.Printf("pipeline FAILED: sum %d over channels, %d in one goroutine\n", sum, want)
		os.Exit(1)
	}
	fmt.Printf("pipeline ok: %s %s/%s, %d workers, sum %d\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, workers, sum)
}
