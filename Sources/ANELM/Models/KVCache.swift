/// Keys and values of every layer for one sequence, grown as tokens arrive (memory follows the
/// sequence, not the context limit). Layout per layer: `[position][kvHead][headDim]`.
public final class KVCache: ModelState {
    public let layerCount: Int
    /// Floats per position in one layer: kvHeads × headDim.
    public let rowWidth: Int
    /// Positions the model accepts at most.
    public let capacity: Int
    public private(set) var count = 0
    /// Positions allocated so far.
    private(set) var allocated = 0
    private var keyStorage: [UnsafeMutablePointer<Float>]
    private var valueStorage: [UnsafeMutablePointer<Float>]

    public init(layers: Int, kvHeads: Int, headDim: Int, capacity: Int) {
        layerCount = layers
        rowWidth = kvHeads * headDim
        self.capacity = capacity
        keyStorage = []
        valueStorage = []
    }

    deinit {
        keyStorage.forEach { $0.deallocate() }
        valueStorage.forEach { $0.deallocate() }
    }

    /// Keys of layer `l`; valid until the next `grow`.
    func keys(_ l: Int) -> UnsafeMutablePointer<Float> { keyStorage[l] }
    /// Values of layer `l`; valid until the next `grow`.
    func values(_ l: Int) -> UnsafeMutablePointer<Float> { valueStorage[l] }

    /// Makes room for `n` more positions; the model writes them, then `commit`s.
    func grow(by n: Int) throws {
        let needed = count + n
        guard needed <= capacity else {
            throw ANELMError("sequence of \(needed) tokens exceeds the context length of \(capacity)")
        }
        guard needed > allocated else { return }
        let newAllocated = min(capacity, max(needed, allocated * 2, 64))
        func regrown(_ old: [UnsafeMutablePointer<Float>]) -> [UnsafeMutablePointer<Float>] {
            (0..<layerCount).map { l in
                let p = UnsafeMutablePointer<Float>.allocate(capacity: newAllocated * rowWidth)
                if l < old.count {
                    p.update(from: old[l], count: count * rowWidth)
                    old[l].deallocate()
                }
                return p
            }
        }
        keyStorage = regrown(keyStorage)
        valueStorage = regrown(valueStorage)
        allocated = newAllocated
    }

    /// Marks `n` freshly written positions as part of the sequence.
    func commit(_ n: Int) { count += n }

    public func truncate(to newCount: Int) throws {
        guard newCount >= 0, newCount <= count else {
            throw ANELMError("cannot truncate a cache of \(count) tokens to \(newCount)")
        }
        count = newCount
    }

    public var byteSize: Int { 2 * layerCount * allocated * rowWidth * MemoryLayout<Float>.size }
}
