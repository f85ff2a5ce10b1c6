import CANELMKernels

/// Keys and values of every layer for one sequence, grown as tokens arrive (memory follows the
/// sequence, not the context limit). Layout per layer: `[kvHead][position][headDim]`, so that attention
/// streams each head's rows from contiguous memory (position-major, a head's 128-byte rows sat 384
/// bytes apart and the key loads waited on memory); in f16 by default (half the memory and the bytes
/// attention reads) or f32 (the reference-exact path).
public final class KVCache: ModelState {
    public let layerCount: Int
    /// Elements per position in one layer: kvHeads × headDim.
    public let rowWidth: Int
    public let kvHeads: Int
    public let headDim: Int
    /// Positions the model accepts at most.
    public let capacity: Int
    /// `.f16` or `.f32`.
    public let element: TensorType
    public private(set) var count = 0
    public var loraScales: [Float] = []
    /// Positions allocated so far.
    private(set) var allocated = 0
    private var keyStorage: [UnsafeMutableRawPointer] = []
    private var valueStorage: [UnsafeMutableRawPointer] = []

    public init(layers: Int, kvHeads: Int, headDim: Int, capacity: Int, element: TensorType = .f16) {
        precondition(element == .f16 || element == .f32, "a KV cache holds f16 or f32")
        layerCount = layers
        rowWidth = kvHeads * headDim
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.capacity = capacity
        self.element = element
    }

    /// The cache element a model loaded at `precision` uses: f32 only on the reference-exact path.
    static func element(for precision: Precision) -> TensorType { precision == .f32 ? .f32 : .f16 }

    deinit {
        keyStorage.forEach { $0.deallocate() }
        valueStorage.forEach { $0.deallocate() }
    }

    private var elementSize: Int { element == .f16 ? 2 : 4 }

    /// Keys of layer `l`, head `h`, from position 0 (rows of `headDim` elements); valid until the next `grow`.
    func keys(_ l: Int, head h: Int) -> UnsafeRawPointer { UnsafeRawPointer(keyStorage[l] + h * allocated * headDim * elementSize) }
    /// Values of layer `l`, head `h`, from position 0; valid until the next `grow`.
    func values(_ l: Int, head h: Int) -> UnsafeRawPointer { UnsafeRawPointer(valueStorage[l] + h * allocated * headDim * elementSize) }

    /// Makes room for `n` more positions; the model `store`s them, then `commit`s.
    func grow(by n: Int) throws {
        let needed = count + n
        guard needed <= capacity else {
            throw ANELMError("sequence of \(needed) tokens exceeds the context length of \(capacity)")
        }
        guard needed > allocated else { return }
        let newAllocated = min(capacity, max(needed, allocated * 2, 64))
        let headRowBytes = headDim * elementSize
        func regrown(_ old: [UnsafeMutableRawPointer]) -> [UnsafeMutableRawPointer] {
            (0..<layerCount).map { l in
                let p = UnsafeMutableRawPointer.allocate(byteCount: newAllocated * kvHeads * headRowBytes, alignment: 64)
                if l < old.count {
                    for h in 0..<kvHeads {
                        (p + h * newAllocated * headRowBytes).copyMemory(from: old[l] + h * allocated * headRowBytes, byteCount: count * headRowBytes)
                    }
                    old[l].deallocate()
                }
                return p
            }
        }
        keyStorage = regrown(keyStorage)
        valueStorage = regrown(valueStorage)
        allocated = newAllocated
    }

    /// Writes the keys and values (f32, `n × rowWidth` each) of the `n` positions after `count` into layer `l`.
    func store(layer l: Int, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, tokens n: Int) {
        precondition(count + n <= allocated, "store past the grown cache")
        for (source, storage) in [(keys, keyStorage[l]), (values, valueStorage[l])] {
            for t in 0..<n {
                for h in 0..<kvHeads {
                    let from = source + t * rowWidth + h * headDim
                    let to = (h * allocated + count + t) * headDim
                    if element == .f16 {
                        anelm_convert_f32_to_f16(from, storage.assumingMemoryBound(to: UInt16.self) + to, headDim)
                    } else {
                        (storage.assumingMemoryBound(to: Float.self) + to).update(from: from, count: headDim)
                    }
                }
            }
        }
    }

    /// Marks `n` freshly stored positions as part of the sequence.
    func commit(_ n: Int) { count += n }

    public func truncate(to newCount: Int) throws {
        guard newCount >= 0, newCount <= count else {
            throw ANELMError("cannot truncate a cache of \(count) tokens to \(newCount)")
        }
        count = newCount
    }

    public var byteSize: Int { 2 * layerCount * allocated * rowWidth * elementSize }

    public var maximumByteSize: Int { 2 * layerCount * capacity * rowWidth * elementSize }
}
