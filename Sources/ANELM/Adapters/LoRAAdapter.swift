import Foundation

/// One low-rank update of a linear layer, `Δy = scale · B·(A·x)`, in f32 (small: rank × (in + out) values).
struct LoRAWeights {
    /// `[rank, in]`.
    let a: WeightMatrix
    /// `[out, rank]`.
    let b: WeightMatrix
    /// The adapter's own factor (PEFT's alpha / rank or alpha / √rank, MLX-LM's scale, llama.cpp's alpha / rank),
    /// before the scale the user asks for.
    let scale: Float
    var rank: Int { a.rows }
}

/// Which file format's tensor names a set of names follows.
enum TensorNaming: String {
    /// transformers' state-dict names (`model.layers.0.self_attn.q_proj.weight`): PEFT and MLX-LM adapters.
    case huggingFace
    /// llama.cpp's names (`blk.0.attn_q.weight`).
    case gguf
}

/// A LoRA adapter as read from its files, whatever their format: the base weights it adapts, by name, and
/// the low-rank update of each.
public struct LoRAAdapter {
    public enum Format: String, Sendable {
        case peft = "PEFT"
        case mlx = "MLX-LM"
        case gguf = "GGUF"
    }

    public let path: String
    public let format: Format
    let naming: TensorNaming
    /// The adapted base weights by tensor name in `naming` (`model.layers.0.self_attn.q_proj.weight`), in file order.
    let targets: [(name: String, weights: LoRAWeights)]
    /// The architecture the file says it was made for (GGUF's `general.architecture`), when it says.
    let architecture: String?
    /// Copies of base weights the adapter was saved with (PEFT, for an adapted output layer), by tensor name in
    /// `naming`: checked to be the model's own, since a different one (a resized vocabulary) is not applied.
    var baseCopies: [(name: String, tensor: Tensor)] = []

    /// Reads an adapter: a PEFT folder (adapter_config.json + adapter_model.safetensors), an MLX-LM folder
    /// (adapter_config.json + adapters.safetensors), either safetensors file with its adapter_config.json beside
    /// it, or a llama.cpp GGUF adapter.
    public static func open(_ path: String) throws -> LoRAAdapter {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw ANELMError("no LoRA adapter at \(path)") }
        let url = URL(fileURLWithPath: path)
        let folder = isDirectory.boolValue ? url : url.deletingLastPathComponent()
        func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path) }
        if !isDirectory.boolValue {
            if try isGGUF(path) { return try readGGUF(path) }
            switch url.lastPathComponent {
            case "adapters.safetensors": return try readMLX(folder: folder.path)
            case "adapter_model.safetensors": return try readPEFT(folder: folder.path)
            default: break
            }
        } else if exists("adapter_model.safetensors") {
            return try readPEFT(folder: folder.path)
        } else if exists("adapters.safetensors") {
            return try readMLX(folder: folder.path)
        }
        throw ANELMError(
            "\(path) is not a LoRA adapter anelm reads: a PEFT folder (adapter_config.json, adapter_model.safetensors), an MLX-LM folder "
                + "(adapter_config.json, adapters.safetensors) or a llama.cpp GGUF adapter")
    }

    /// Whether the file starts with GGUF's magic.
    private static func isGGUF(_ path: String) throws -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw ANELMError("cannot read \(path)") }
        defer { try? handle.close() }
        return (try handle.read(upToCount: 4)) == Data("GGUF".utf8)
    }

    /// adapter_config.json of an adapter folder, parsed.
    static func config(in folder: String) throws -> JSONObject {
        let file = URL(fileURLWithPath: folder).appendingPathComponent("adapter_config.json").path
        guard let data = FileManager.default.contents(atPath: file) else { throw ANELMError("no adapter_config.json in \(folder)") }
        guard let object = try JSONValue.parse(data, source: file).objectValue else { throw ANELMError("\(file) is not a JSON object") }
        return object
    }

    /// `tensor` as an owned f32 `[rows, cols]` matrix, its shape checked; transposed first when the file stores
    /// it the other way round (MLX-LM).
    static func matrix(_ tensor: Tensor, rows: Int? = nil, transposed: Bool = false, adapter: String) throws -> WeightMatrix {
        guard tensor.shape.count == 2, tensor.shape.allSatisfy({ $0 > 0 }) else {
            throw ANELMError("\(adapter): tensor \(quoted(tensor.name)) has shape \(tensor.shape), expected a matrix")
        }
        let stored = try WeightMatrix.dequantized(tensor)
        guard transposed else { return stored }
        let values = stored.data.assumingMemoryBound(to: Float.self)
        var out = [Float](repeating: 0, count: stored.rows * stored.cols)
        for r in 0..<stored.rows {
            for c in 0..<stored.cols { out[c * stored.rows + r] = values[r * stored.cols + c] }
        }
        return try WeightMatrix(f32: out, rows: stored.cols, cols: stored.rows)
    }

    /// A/B pairs checked against each other (A's rows are B's columns: the rank).
    static func pair(a: WeightMatrix, b: WeightMatrix, scale: (Int) throws -> Float, name: String, adapter: String) throws -> LoRAWeights {
        guard a.rows == b.cols else {
            throw ANELMError("\(adapter): \(quoted(name)) has rank \(a.rows) in A but \(b.cols) in B")
        }
        return LoRAWeights(a: a, b: b, scale: try scale(a.rows))
    }
}
