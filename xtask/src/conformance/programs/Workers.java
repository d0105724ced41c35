// A small class compiled with javac and run with java, Debian's OpenJDK, inside the
// emulated userland (cargo xtask conformance, workload `java`): the JIT, a thread
// pool and a parallel stream under the emulator, each result compared with one
// computed on the main thread.
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.LongStream;

public class Workers {
    static long collatz(long n) {
        long steps = 0;
        while (n != 1) {
            n = (n % 2 == 0) ? n / 2 : 3 * n + 1;
            steps++;
        }
        return steps;
    }

    static long range(long from, long to) {
        long sum = 0;
        for (long n = from; n < to; n++) {
            sum += collatz(n);
        }
        return sum;
    }

    public static void main(String[] args) throws Exception {
        final long limit = 200000;
        final int slices = 4;
        ExecutorService pool = Executors.newFixedThreadPool(slices);
        List<Future<Long>> parts = new ArrayList<>();
        for (int i = 0; i < slices; i++) {
            final long from = 1 + i * limit / slices;
            final long to = 1 + (i + 1) * limit / slices;
            parts.add(pool.submit(() -> range(from, to)));
        }
        long pooled = 0;
        for (Future<Long> part : parts) {
            pooled += part.get();
        }
        pool.shutdown();
        long streamed = LongStream.range(1, limit + 1).parallel().map(Workers::collatz).sum();
        long want = range(1, limit + 1);
        if (pooled != want || streamed != want) {
            System.out.println("java FAILED: pool " + pooled + ", stream " + streamed + ", main thread " + want);
            System.exit(1);
        }
        System.out.println("java ok: " + System.getProperty("java.vm.name") + " "
            + System.getProperty("java.version") + " " + System.getProperty("os.arch")
            + ", " + slices + " threads, sum " + want);
    }
}
