import Foundation

// Hugging Face PEFT's LoRA folders: adapter_config.json (`r`, `lora_alpha`, `use_rslora`, `target_modules`, …) and
// adapter_model.safetensors with `base_model.model.<module>.lora_A.weight` ([r, in]) and `….lora_B.weight`
// ([out, r]) per adapted `nn.Linear`; `Δy = lora_alpha / r · B·(A·x)` (alpha / √r with rsLoRA).

extension LoRAAdapter {
    static func readPEFT(folder: String) throws -> LoRAAdapter {
        let config = try config(in: folder)
        let name = URL(fileURLWithPath: folder).lastPathComponent
        let where_ = "PEFT adapter \(name)"
        if let type = config["peft_type"]?.stringValue, type != "LORA" {
            throw ANELMError("\(where_) is a \(quoted(type)) adapter; anelm applies LoRA adapters")
        }
        if config["use_dora"]?.boolValue == true { throw ANELMError("\(where_) uses DoRA (use_dora), which anelm does not apply") }
        if let pattern = config["alpha_pattern"]?.objectValue, !pattern.isEmpty {
            throw ANELMError("\(where_) sets alpha_pattern (per-module alphas), which anelm does not apply")
        }
        if let saved = config["modules_to_save"]?.arrayValue, !saved.isEmpty {
            throw ANELMError(
                "\(where_) saves whole modules (modules_to_save: \(saved.compactMap(\.stringValue).joined(separator: ", "))), which anelm does not apply")
        }
        guard let alpha = config["lora_alpha"]?.numberValue, alpha.isFinite else { throw ANELMError("\(where_): adapter_config.json has no lora_alpha") }
        let rsLoRA = config["use_rslora"]?.boolValue ?? false
        // `fan_in_fan_out` only changes how a GPT-2 `Conv1D` stores its weight; PEFT turns it off for `nn.Linear`,
        // the only layer kind these families have, and lora_A/lora_B keep their orientation either way.
        let file = try SafetensorsFile(path: URL(fileURLWithPath: folder).appendingPathComponent("adapter_model.safetensors").path)
        let prefix = "base_model.model."
        var targets: [(name: String, weights: LoRAWeights)] = []
        var baseCopies: [(name: String, tensor: Tensor)] = []
        for key in file.tensorNames {
            guard key.hasSuffix(".lora_A.weight") else {
                if key.hasSuffix(".lora_B.weight") { continue }
                // PEFT saves the base weight of an adapted output layer beside its A/B; it must be the model's own.
                if key.hasPrefix(prefix), key.hasSuffix(".base_layer.weight"), let tensor = try file.tensor(named: key) {
                    baseCopies.append((String(key.dropFirst(prefix.count).dropLast(".base_layer.weight".count)) + ".weight", tensor))
                    continue
                }
                if key.contains(".lora_embedding_") { throw ANELMError("\(where_): \(quoted(key)) adapts an embedding, which anelm does not apply") }
                throw ANELMError("\(where_): tensor \(quoted(key)) is not a LoRA A/B matrix (biases and saved modules are not applied)")
            }
            guard key.hasPrefix(prefix) else { throw ANELMError("\(where_): tensor \(quoted(key)) does not start with \(quoted(prefix))") }
            let module = String(key.dropFirst(prefix.count).dropLast(".lora_A.weight".count))
            let bKey = prefix + module + ".lora_B.weight"
            guard let aTensor = try file.tensor(named: key), let bTensor = try file.tensor(named: bKey) else {
                throw ANELMError("\(where_): \(quoted(key)) has no \(quoted(bKey))")
            }
            let weights = try pair(
                a: try matrix(aTensor, adapter: where_), b: try matrix(bTensor, adapter: where_),
                scale: { rank in Float(rsLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank)) }, name: module, adapter: where_)
            targets.append((module + ".weight", weights))
        }
        if let orphan = file.tensorNames.first(where: { $0.hasSuffix(".lora_B.weight") && !file.entries.keys.contains(String($0.dropLast(14)) + ".lora_A.weight") }) {
            throw ANELMError("\(where_): \(quoted(orphan)) has no lora_A")
        }
        guard !targets.isEmpty else { throw ANELMError("\(where_): adapter_model.safetensors holds no LoRA weights") }
        return LoRAAdapter(path: folder, format: .peft, naming: .huggingFace, targets: targets, architecture: nil, baseCopies: baseCopies)
    }
}
