/// A stored weight tensor: a view into a memory-mapped file (or an owned buffer), never a copy.
///
/// `shape` is outermost-first, as PyTorch and safetensors write it: a linear layer's weight is
/// `[outFeatures, inFeatures]` and each of its rows is contiguous. (GGUF lists dimensions
/// innermost-first; its reader reverses them.)
public struct Tensor: @unchecked Sendable {
    public let name: String
    public let type: TensorType
    public let shape: [Int]
    /// The tensor's bytes; valid as long as `owner` lives.
    public let data: UnsafeRawBufferPointer
    /// Keeps the mapping or buffer behind `data` alive.
    public let owner: AnyObject

    public init(name: String, type: TensorType, shape: [Int], data: UnsafeRawBufferPointer, owner: AnyObject) {
        self.name = name
        self.type = type
        self.shape = shape
        self.data = data
        self.owner = owner
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// Length of the innermost dimension (a row of a matrix).
    public var rowLength: Int { shape.last ?? 1 }
    /// Number of rows: all dimensions but the innermost, multiplied.
    public var rowCount: Int { shape.dropLast().reduce(1, *) }
}

/// Anything that hands out tensors by their name in the file.
public protocol TensorStore: AnyObject {
    var tensorNames: [String] { get }
    /// nil when there is no such tensor; throws when it exists but anelm cannot use it.
    func tensor(named name: String) throws -> Tensor?
}
