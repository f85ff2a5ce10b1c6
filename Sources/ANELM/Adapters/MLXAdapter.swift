import Foundation

// MLX-LM's LoRA folders: adapter_config.json (`fine_tune_type`, `lora_parameters`: `rank`, `scale`, …) and
// adapters.safetensors with `<module>.lora_a` ([in, r]) and `<module>.lora_b` ([r, out]) per adapted layer;
// `Δy = scale · (x·lora_a)·lora_b` — the scale is used as it is, not divided by the rank.

extension LoRAAdapter {
    static func readMLX(folder: String) throws -> LoRAAdapter {
        let config = try config(in: folder)
        let where_ = "MLX-LM adapter \(URL(fileURLWithPath: folder).lastPathComponent)"
        let kind = config["fine_tune_type"]?.stringValue ?? (config["use_dora"]?.boolValue == true ? "dora" : "lora")
        guard kind == "lora" else { throw ANELMError("\(where_) is a \(quoted(kind)) fine-tune; anelm applies LoRA adapters") }
        guard let scale = config["lora_parameters"]?["scale"]?.numberValue, scale.isFinite else {
            throw ANELMError("\(where_): adapter_config.json has no lora_parameters.scale")
        }
        let file = try SafetensorsFile(path: URL(fileURLWithPath: folder).appendingPathComponent("adapters.safetensors").path)
        var targets: [(name: String, weights: LoRAWeights)] = []
        for key in file.tensorNames {
            guard key.hasSuffix(".lora_a") else {
                if key.hasSuffix(".lora_b") { continue }
                throw ANELMError("\(where_): tensor \(quoted(key)) is not a LoRA lora_a/lora_b matrix")
            }
            let module = String(key.dropLast(".lora_a".count))
            guard let aTensor = try file.tensor(named: key), let bTensor = try file.tensor(named: module + ".lora_b") else {
                throw ANELMError("\(where_): \(quoted(key)) has no \(quoted(module + ".lora_b"))")
            }
            let weights = try pair(
                a: try matrix(aTensor, transposed: true, adapter: where_), b: try matrix(bTensor, transposed: true, adapter: where_),
                scale: { _ in Float(scale) }, name: module, adapter: where_)
            targets.append((module + ".weight", weights))
        }
        if let orphan = file.tensorNames.first(where: { $0.hasSuffix(".lora_b") && !file.entries.keys.contains(String($0.dropLast(7)) + ".lora_a") }) {
            throw ANELMError("\(where_): \(quoted(orphan)) has no lora_a")
        }
        guard !targets.isEmpty else { throw ANELMError("\(where_): adapters.safetensors holds no LoRA weights") }
        return LoRAAdapter(path: folder, format: .mlx, naming: .huggingFace, targets: targets, architecture: nil)
    }
}
