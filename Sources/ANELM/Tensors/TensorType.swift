/// Element types of stored weights, with GGML's block layouts for the quantized ones.
/// Raw values are GGML's type ids (as written in GGUF tensor infos).
public enum TensorType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case bf16 = 30

    /// Elements per block (1 for plain float types).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: return 32
        case .q4_K, .q5_K, .q6_K: return 256  // K-quant super-blocks
        }
    }

    /// Bytes per block.
    public var bytesPerBlock: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 18  // f16 scale + 16 bytes of nibbles
        case .q4_1: return 20  // f16 scale + f16 min + 16 bytes of nibbles
        case .q5_0: return 22  // f16 scale + 32 fifth bits + 16 bytes of nibbles
        case .q5_1: return 24  // f16 scale + f16 min + 32 fifth bits + 16 bytes of nibbles
        case .q8_0: return 34  // f16 scale + 32 int8
        case .q4_K: return 144  // f16 scale + f16 min scale + 12 bytes of 6-bit sub-block scales/mins + 128 bytes of nibbles
        case .q5_K: return 176  // as Q4_K + 32 bytes of fifth bits
        case .q6_K: return 210  // 128 bytes of low nibbles + 64 of 2-bit highs + 16 int8 scales + f16 scale
        }
    }

    public var isQuantized: Bool { blockSize > 1 }

    /// Bytes taken by `count` elements; nil when `count` is not a whole number of blocks or overflows.
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: bytesPerBlock)
        return overflow ? nil : bytes
    }

    public var description: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        }
    }

    /// Names of GGML types anelm knows of but cannot read yet, for error messages.
    public static func ggmlName(of id: UInt32) -> String {
        let names: [UInt32: String] = [
            0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
            10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
            17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
            23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
            30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
        ]
        return names[id] ?? "type \(id)"
    }
}
