import CANELMKernels

/// Keys and values of every layer for one sequence, grown as tokens arrive (memory follows the
/// sequence, not the context limit). Layout per layer: `[position][kvHead][headDim]`, in f16 by
/// default (half the memory and the bytes attention reads) or f32 (the reference-exact path).
public final class KVCache: ModelState {
    public let layerCount: Int
    /// Elements per position in one layer: kvHeads × headDim.
    public let rowWidth: Int
    /// Positions the model accepts at most.
    public let capacity: Int
    /// `.f16` or `.f32`.
    public let element: TensorType
    public private(set) var count = 0
    /// Positions allocated so far.
    private(set) var allocated = 0
    private var keyStorage: [UnsafeMutableRawPointer] = []
    private var valueStorage: [UnsafeMutableRawPointer] = []

    public init(layers: Int, kvHeads: Int, headDim: Int, capacity: Int, element: TensorType = .f16) {
        precondition(element == .f16 || element == .f32, "a KV cache holds f16 or f32")
        layerCount = layers
        rowWidth = kvHeads * headDim
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

    /// Keys of layer `l` from position 0; valid until the next `grow`.
    func keys(_ l: Int) -> UnsafeRawPointer { UnsafeRawPointer(keyStorage[l]) }
    /// Values of layer `l` from position 0; valid until the next `grow`.
    func values(_ l: Int) -> UnsafeRawPointer { UnsafeRawPointer(valueStorage[l]) }

    /// Makes room for `n` more positions; the model `store`s them, then `commit`s.
    func grow(by n: Int) throws {
        let needed = count + n
        guard needed <= capacity else {
            throw ANELMError("sequence of \(needed) tokens exceeds the context length of \(capacity)")
        }
        guard needed > allocated else { return }
        let newAllocated = min(capacity, max(needed, allocated * 2, 64))
        let rowBytes = rowWidth * elementSize
        func regrown(_ old: [UnsafeMutableRawPointer]) -> [UnsafeMutableRawPointer] {
            (0..<layerCount).map { l in
                let p = UnsafeMutableRawPointer.allocate(byteCount: newAllocated * rowBytes, alignment: 64)
                if l < old.count {
                    p.copyMemory(from: old[l], byteCount: count * rowBytes)
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
        let offset = count * rowWidth, elements = n * rowWidth
        for (source, storage) in [(keys, keyStorage[l]), (values, valueStorage[l])] {
            if element == .f16 {
                anelm_convert_f32_to_f16(source, storage.assumingMemoryBound(to: UInt16.self) + offset, elements)
            } else {
                (storage.assumingMemoryBound(to: Float.self) + offset).update(from: source, count: elements)
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
}
