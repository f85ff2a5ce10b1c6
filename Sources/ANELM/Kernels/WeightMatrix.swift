import CANELMKernels

/// A `[rows, cols]` weight matrix as the kernels read it: rows contiguous, in the stored type
/// (a view into the mapped file) or dequantized to an owned f32 copy.
public struct WeightMatrix: @unchecked Sendable {
    public let type: TensorType
    public let rows: Int
    public let cols: Int
    public let data: UnsafeRawPointer
    public let rowBytes: Int
    /// Keeps `data` alive (the mapped file or an owned buffer).
    let owner: AnyObject

    /// The tensor as stored, not copied.
    public init(_ tensor: Tensor) throws {
        guard tensor.shape.count <= 2 else { throw ANELMError("tensor '\(tensor.name)' with shape \(tensor.shape) is not a matrix") }
        guard let rowBytes = tensor.type.byteCount(elements: tensor.rowLength), tensor.rowLength > 0, let base = tensor.data.baseAddress else {
            throw ANELMError(
                "tensor '\(tensor.name)': row length \(tensor.rowLength) is not a positive multiple of \(tensor.type)'s \(tensor.type.blockSize)-element blocks"
            )
        }
        type = tensor.type
        rows = tensor.rowCount
        cols = tensor.rowLength
        data = base
        self.rowBytes = rowBytes
        owner = tensor.owner
    }

    /// f32 values supplied by the caller (tests, tiny models).
    public init(f32 values: [Float], rows: Int, cols: Int) throws {
        guard rows > 0, cols > 0, values.count == rows * cols else { throw ANELMError("\(values.count) values do not make a \(rows)×\(cols) matrix") }
        let buffer = OwnedBuffer(bytes: values.count * 4)
        values.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        type = .f32
        self.rows = rows
        self.cols = cols
        data = UnsafeRawPointer(buffer.pointer)
        rowBytes = cols * 4
        owner = buffer
    }

    /// The tensor dequantized to f32 (the reference-exact path).
    public static func dequantized(_ tensor: Tensor) throws -> WeightMatrix {
        let stored = try WeightMatrix(tensor)
        if stored.type == .f32 { return stored }
        let buffer = OwnedBuffer(bytes: stored.rows * stored.cols * 4)
        let out = buffer.pointer.assumingMemoryBound(to: Float.self)
        guard anelm_dequantize(Int32(stored.type.rawValue), stored.data, out, stored.rows * stored.cols) == 1 else {
            throw ANELMError("cannot dequantize \(stored.type) tensor '\(tensor.name)'")
        }
        return WeightMatrix(type: .f32, rows: stored.rows, cols: stored.cols, data: UnsafeRawPointer(out), rowBytes: stored.cols * 4, owner: buffer)
    }

    private init(type: TensorType, rows: Int, cols: Int, data: UnsafeRawPointer, rowBytes: Int, owner: AnyObject) {
        self.type = type
        self.rows = rows
        self.cols = cols
        self.data = data
        self.rowBytes = rowBytes
        self.owner = owner
    }

    /// Row `row` as f32 into `out` (`cols` floats). `row` must be in 0..<rows.
    public func dequantizeRow(_ row: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(row >= 0 && row < rows, "row \(row) out of 0..<\(rows)")
        anelm_dequantize(Int32(type.rawValue), data + row * rowBytes, out, cols)
    }

    /// Whether activations are rounded as llama.cpp's CPU backend rounds them for this weight type (precision
    /// `ggml`), instead of anelm's 16-bit blocks.
    public var roundsActivationsLikeGGML = false

    /// What the kernels multiply this matrix by.
    var activations: ActivationForm {
        guard roundsActivationsLikeGGML else { return type.isQuantized ? .q16 : .f32 }
        switch type {
        case .f32: return .f32
        case .f16, .bf16: return .rounded(type)
        case .q4_0, .q5_0, .q8_0: return .ggml(Int32(ANELM_GGML_Q8_0))
        case .q4_1, .q5_1: return .ggml(Int32(ANELM_GGML_Q8_1))
        case .q4_K, .q5_K, .q6_K: return .ggml(Int32(ANELM_GGML_Q8_K))
        }
    }
}

/// The form of the activations a weight type is multiplied by: f32 as computed, anelm's 16-bit blocks, or (precision
/// `ggml`) llama.cpp's: rounded to f16/bf16, or one of its 8-bit block types.
enum ActivationForm: Hashable {
    case f32
    case q16
    case rounded(TensorType)
    case ggml(Int32)
}

/// An owned, 64-byte aligned allocation.
final class OwnedBuffer {
    let pointer: UnsafeMutableRawPointer
    init(bytes: Int) { pointer = .allocate(byteCount: max(bytes, 1), alignment: 64) }
    deinit { pointer.deallocate() }
}
