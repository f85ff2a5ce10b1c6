import CANELMKernels

/// A persistent pool of worker threads (created once per model, never per kernel call).
public final class ThreadPool: @unchecked Sendable {
    public let threads: Int
    private let raw: OpaquePointer?

    public init(threads: Int) {
        self.threads = max(1, threads)
        raw = anelm_pool_create(Int32(clamping: self.threads))
    }

    deinit { anelm_pool_destroy(raw) }

    /// The machine's physical core count: the default thread count.
    public static var physicalCoreCount: Int { Int(anelm_physical_cores()) }

    /// Calls `body(i)` for every i in 0..<count across the pool; returns when all are done.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        guard count > 0 else { return }
        if threads == 1 || count == 1 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            var box = body
            withUnsafeMutablePointer(to: &box) { context in
                anelm_pool_run(
                    raw, count,
                    { ctx, index in
                        ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
                    }, context)
            }
        }
    }

    /// Splits `count` items into about `4 × threads` contiguous ranges (fewer when `minimum`
    /// items per range would not be met) and runs `body` on each.
    public func parallelRanges(_ count: Int, minimum: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let chunks = max(1, min(threads * 4, count / max(minimum, 1)))
        let size = (count + chunks - 1) / chunks
        parallelFor((count + size - 1) / size) { i in body((i * size)..<min(count, (i + 1) * size)) }
    }
}
