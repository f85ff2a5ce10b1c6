import CANELMKernels
import Foundation

/// How far a conversion is: tensors and bytes written so far.
public struct ConversionProgress: Sendable {
    public let tensor: String
    public let tensorsDone: Int
    public let tensorCount: Int
    public let bytesDone: Int
    public let byteCount: Int
}

/// What a conversion wrote.
public struct ConversionSummary: Sendable {
    public let output: String
    public let format: Converter.Format
    /// Tensors written per stored type.
    public let tensorsByType: [TensorType: Int]
    public let bytes: Int
}

/// `anelm convert`: a GGUF file or a Hugging Face folder to a GGUF v3 file (re-quantized to any writable type)
/// or to a Hugging Face folder (safetensors f32/f16/bf16, config.json, tokenizer files).
///
/// Which tensors keep f32 follows llama.cpp: 1-D tensors, norms and biases (anything not `*.weight`) stay f32
/// (`convert_hf_to_gguf.py`); every other weight takes the requested type, falling back as llama-quantize does
/// when its rows are not whole blocks (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, then F16). Token embeddings and
/// the output head take the requested type too: what `llama-quantize --pure` writes (its default mixes in Q6_K
/// for the head). A tensor already stored in the target type is copied, not re-quantized, as llama-quantize does.
public enum Converter {
    public enum Format: Sendable {
        case gguf, huggingFace
    }

    /// A `.gguf` name is a GGUF file; any other path a Hugging Face folder.
    public static func format(of output: String) -> Format { output.lowercased().hasSuffix(".gguf") ? .gguf : .huggingFace }

    /// The type a GGUF tensor is stored in for a requested type (see the type's doc above).
    public static func storedType(ggufName name: String, shape: [Int], requested: TensorType) -> TensorType {
        guard shape.count >= 2, name.hasSuffix(".weight"), !name.hasSuffix("_norm.weight"), let rowLength = shape.last else { return .f32 }
        var type = requested
        if rowLength % type.blockSize != 0 {
            switch type {
            case .q4_K: type = .q5_0
            case .q5_K: type = .q5_1
            case .q6_K: type = .q8_0
            default: break
            }
            if rowLength % type.blockSize != 0 { type = .f16 }
        }
        return type
    }

    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_*`) for a requested type; the K-quants as their `_S` (pure) variants.
    static func llamaFileType(_ type: TensorType) -> UInt32 {
        switch type {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q4_1: return 3
        case .q8_0: return 7
        case .q5_0: return 8
        case .q5_1: return 9
        case .q4_K: return 14
        case .q5_K: return 16
        case .q6_K: return 18
        case .bf16: return 32
        }
    }

    private struct Item {
        let sourceName: String
        let plan: GGUFTensorPlan
        /// The name the family's conversion knows the tensor by in GGUF, when the tensor changes between formats.
        var transformAs: String? = nil
        /// The values of a tensor the family derives from config.json rather than reads (`ModelConversion.generatedTensors`).
        var generated: [Float]? = nil
    }

    /// Converts `model` to `output`, with `lora` adapters added into the weights they adapt (`W + scale·B·A`, then
    /// stored in the output's type). An existing output is refused unless `force`; the output is written under a
    /// temporary name and moved into place, so a failure (a full disk, a corrupt source) leaves nothing at `output`.
    @discardableResult
    public static func convert(
        model: String, output: String, type: TensorType, force: Bool = false, lora: [LoRAChoice] = [],
        progress: (ConversionProgress) -> Void = { _ in }
    ) throws -> ConversionSummary {
        guard Quantizer.writableTypes.contains(type) else { throw ANELMError("anelm cannot write \(type) tensors") }
        let format = format(of: output)
        if format == .huggingFace && type.isQuantized {
            throw ANELMError("a Hugging Face folder holds f32, f16 or bf16 weights, not \(type); name a .gguf output to quantize")
        }
        func canonical(_ p: String) -> String { URL(fileURLWithPath: p).standardizedFileURL.resolvingSymlinksInPath().path }
        guard canonical(model) != canonical(output) else { throw ANELMError("the output \(output) is the model being converted") }
        if FileManager.default.fileExists(atPath: output) && !force {
            throw ANELMError("\(output) already exists; pass --force to replace it")
        }
        let source = try ModelLoader.open(model)
        let family = try ModelRegistry.family(of: source)
        var binder: LoRABinder?
        if !lora.isEmpty {
            guard let targets = family.loraTargets else { throw ANELMError("LoRA adapters on \(family.name) are not supported") }
            let pool = ThreadPool(threads: ProcessInfo.processInfo.activeProcessorCount)
            binder = try LoadOptions(lora: lora, loraMerge: true).loraBinder(source, names: try targets(source), pool: pool)
        }
        let staged = try StagedOutput(destination: output, replacing: force)

        let items = try plan(source, family: family, format: format, type: type)
        let byteCount = items.reduce(0) { $0 + $1.plan.byteCount }
        var bytesDone = 0
        var tensorsByType: [TensorType: Int] = [:]
        func writeTensors(_ write: ([UInt8]) throws -> Void) throws {
            for (index, item) in items.enumerated() {
                try write(try encodedBytes(item, source: source, family: family, toGGUF: format == .gguf, lora: binder))
                bytesDone += item.plan.byteCount
                tensorsByType[item.plan.type, default: 0] += 1
                progress(ConversionProgress(tensor: item.plan.name, tensorsDone: index + 1, tensorCount: items.count, bytesDone: bytesDone, byteCount: byteCount))
            }
        }

        switch format {
        case .gguf:
            let writer = try GGUFWriter(path: staged.staging, metadata: try ggufMetadata(source, family: family, type: type), tensors: items.map(\.plan))
            try writeTensors(writer.write)
            try writer.finish()
        case .huggingFace:
            try FileManager.default.createDirectory(atPath: staged.staging, withIntermediateDirectories: false)
            let folder = URL(fileURLWithPath: staged.staging)
            for (name, json) in try huggingFaceFiles(source, family: family, type: type) {
                let file = try OutputFile(creating: folder.appendingPathComponent(name).path)
                try file.write(Array(json.text.utf8))
                try file.close()
            }
            let writer = try SafetensorsWriter(path: folder.appendingPathComponent("model.safetensors").path, tensors: items.map(\.plan))
            try writeTensors(writer.write)
            try writer.finish()
        }
        _ = try binder?.finish()  // an adapted weight the model does not have is an error, and nothing is committed
        try staged.commit()
        return ConversionSummary(output: output, format: format, tensorsByType: tensorsByType, bytes: byteCount)
    }

    // MARK: Planning

    private static func plan(_ source: ModelSource, family: ModelFamily, format: Format, type: TensorType) throws -> [Item] {
        let store = source.tensors
        var sourceIsGGUF = false
        if case .gguf = source { sourceIsGGUF = true }
        let crossing = sourceIsGGUF != (format == .gguf)
        var nameMap: [String: String] = [:]
        if crossing {
            guard let conversion = family.conversion else {
                throw ANELMError("converting \(family.name) between GGUF and Hugging Face folders is not supported yet; re-quantizing within a format is")
            }
            for pair in try conversion.tensorNames(source) {
                if sourceIsGGUF { nameMap[pair.gguf] = pair.huggingFace } else { nameMap[pair.huggingFace] = pair.gguf }
            }
        }
        var items: [Item] = []
        for name in store.tensorNames {
            guard let tensor = try store.tensor(named: name) else { continue }
            var outName = name
            if crossing {
                guard let mapped = nameMap[name] else {
                    throw ANELMError("tensor \(quoted(name)) has no \(format == .gguf ? "GGUF" : "Hugging Face") counterpart in \(family.name)")
                }
                outName = mapped
            }
            let ggufName = format == .gguf ? outName : name
            let stored = format == .gguf ? storedType(ggufName: outName, shape: tensor.shape, requested: type) : type
            items.append(Item(sourceName: name, plan: GGUFTensorPlan(name: outName, shape: tensor.shape, type: stored), transformAs: crossing ? ggufName : nil))
        }
        if crossing, case .huggingFace(let folder) = source, let conversion = family.conversion {
            let generated = try conversion.generatedTensors(folder).map {
                Item(sourceName: $0.name, plan: GGUFTensorPlan(name: $0.name, shape: [$0.values.count], type: .f32), generated: $0.values)
            }
            items = generated + items
        }
        guard !items.isEmpty else { throw ANELMError("the model has no tensors") }
        return items
    }

    /// The tensor in its output type: copied when already stored so, else dequantized (with the adapters' updates
    /// added when they adapt it), rearranged and encoded.
    private static func encodedBytes(_ item: Item, source: ModelSource, family: ModelFamily, toGGUF: Bool, lora: LoRABinder?) throws -> [UInt8] {
        if let values = item.generated { return values.withUnsafeBytes { Array($0) } }
        guard let tensor = try source.tensors.tensor(named: item.sourceName) else { throw ANELMError("tensor \(quoted(item.sourceName)) disappeared") }
        let adapted = lora?.adapts(item.sourceName) ?? false
        if tensor.type == item.plan.type && item.transformAs == nil && !adapted { return Array(tensor.data) }
        var values: [Float]
        if let lora, adapted {
            let merged = try lora.attach(Linear(weight: try WeightMatrix(tensor), bias: nil), name: item.sourceName).weight
            values = Array(UnsafeBufferPointer(start: merged.data.assumingMemoryBound(to: Float.self), count: merged.rows * merged.cols))
        } else {
            values = try dequantize(tensor)
        }
        if let name = item.transformAs, let conversion = family.conversion {
            try conversion.transform(name, &values, tensor.shape, source, toGGUF)
        }
        return try values.withUnsafeBufferPointer { try Quantizer.encode($0, rowLength: tensor.rowLength, as: item.plan.type, name: item.plan.name) }
    }

    /// Every element of a tensor as f32.
    public static func dequantize(_ tensor: Tensor) throws -> [Float] {
        let count = tensor.elementCount
        guard let base = tensor.data.baseAddress, count > 0 else { return [] }
        guard tensor.type.byteCount(elements: count) == tensor.data.count else { throw ANELMError("tensor \(quoted(tensor.name)) has the wrong byte count") }
        var out = [Float](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBufferPointer { anelm_dequantize(Int32(tensor.type.rawValue), base, $0.baseAddress!, count) }
        guard ok == 1 else { throw ANELMError("cannot dequantize \(tensor.type) tensor \(quoted(tensor.name))") }
        return out
    }

    // MARK: Metadata

    private static func ggufMetadata(_ source: ModelSource, family: ModelFamily, type: TensorType) throws -> [(key: String, value: GGUFEncodedValue)] {
        let rewritten: Set<String> = ["general.alignment", "general.file_type", "general.quantization_version"]
        var keys: [(key: String, value: GGUFEncodedValue)] = []
        switch source {
        case .gguf(let file):
            for key in file.metadataKeys where !rewritten.contains(key) {
                guard let value = file.encodedValue(key) else { continue }
                keys.append((key, value))
            }
        case .huggingFace(let folder):
            guard let conversion = family.conversion else { throw ANELMError("converting \(family.name) to GGUF is not supported yet") }
            keys = try conversion.ggufMetadata(folder)
            keys.insert(("general.name", .string(URL(fileURLWithPath: folder.path).lastPathComponent)), at: 1)
            keys += try TokenizerConversion.ggufMetadata(folder, vocabularySize: folder.config["vocab_size"]?.integerValue ?? 0)
        }
        keys.append(("general.file_type", .uint32(llamaFileType(type))))
        keys.append(("general.quantization_version", .uint32(2)))
        return keys
    }

    /// config.json and the tokenizer files of a Hugging Face folder output.
    private static func huggingFaceFiles(_ source: ModelSource, family: ModelFamily, type: TensorType) throws -> [(name: String, json: JSONValue)] {
        let dtype: JSONValue = type == .f32 ? "float32" : type == .f16 ? "float16" : "bfloat16"
        var files: [(name: String, json: JSONValue)] = []
        var config: JSONObject
        switch source {
        case .huggingFace(let folder):
            guard let object = folder.config.objectValue else { throw ANELMError("config.json is not an object") }
            config = object
            for name in ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json", "chat_template.json"] {
                let path = URL(fileURLWithPath: folder.path).appendingPathComponent(name).path
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                files.append((name, try JSONValue.parse(data, source: path)))
            }
            if let template = folder.chatTemplateFile, !files.contains(where: { $0.name == "chat_template.json" }) {
                files.append(("chat_template.json", ["chat_template": .string(template)]))
            }
        case .gguf(let file):
            guard let conversion = family.conversion else { throw ANELMError("converting \(family.name) to a Hugging Face folder is not supported yet") }
            config = try conversion.huggingFaceConfig(file)
            files += try TokenizerConversion.huggingFaceFiles(file)
        }
        config["torch_dtype"] = dtype
        if config["dtype"] != nil { config["dtype"] = dtype }
        return [("config.json", .object(config))] + files
    }
}
