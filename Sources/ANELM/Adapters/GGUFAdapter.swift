import Foundation

// llama.cpp's LoRA adapters (convert_lora_to_gguf.py): a GGUF file with `general.type = adapter`,
// `adapter.type = lora`, `adapter.lora.alpha`, and `<base weight>.lora_a` ([r, in]) / `.lora_b` ([out, r]) per
// adapted weight, named as llama.cpp names the base (`blk.0.attn_q.weight.lora_a`); `Δy = alpha / r · B·(A·x)`,
// or `B·(A·x)` when alpha is 0 or absent (llama.cpp's rule).

extension LoRAAdapter {
    static func readGGUF(_ path: String) throws -> LoRAAdapter {
        let file = try GGUFFile(path: path)
        let where_ = "GGUF adapter \(URL(fileURLWithPath: path).lastPathComponent)"
        guard file.string("general.type") == "adapter" else {
            throw ANELMError("\(where_) is not an adapter (general.type is \(file.string("general.type").map(quoted) ?? "missing")); is it a model?")
        }
        guard file.string("adapter.type") == "lora" else {
            throw ANELMError("\(where_) is a \(file.string("adapter.type").map(quoted) ?? "untyped") adapter; anelm applies LoRA adapters")
        }
        let alpha = file.double("adapter.lora.alpha") ?? 0
        guard alpha.isFinite else { throw ANELMError("\(where_): adapter.lora.alpha is not a finite number") }
        var targets: [(name: String, weights: LoRAWeights)] = []
        for key in file.tensorNames {
            guard key.hasSuffix(".lora_a") else {
                if key.hasSuffix(".lora_b") { continue }
                throw ANELMError("\(where_): tensor \(quoted(key)) is not a LoRA lora_a/lora_b matrix")
            }
            let base = String(key.dropLast(".lora_a".count))
            if base.hasPrefix("token_embd.") { throw ANELMError("\(where_): \(quoted(key)) adapts the token embeddings, which anelm does not apply") }
            guard let aTensor = try file.tensor(named: key), let bTensor = try file.tensor(named: base + ".lora_b") else {
                throw ANELMError("\(where_): \(quoted(key)) has no \(quoted(base + ".lora_b"))")
            }
            let weights = try pair(
                a: try matrix(aTensor, adapter: where_), b: try matrix(bTensor, adapter: where_),
                scale: { rank in alpha != 0 ? Float(alpha / Double(rank)) : 1 }, name: base, adapter: where_)
            targets.append((base, weights))
        }
        if let orphan = file.tensorNames.first(where: { $0.hasSuffix(".lora_b") && !file.tensorNames.contains(String($0.dropLast(7)) + ".lora_a") }) {
            throw ANELMError("\(where_): \(quoted(orphan)) has no lora_a")
        }
        guard !targets.isEmpty else { throw ANELMError("\(where_) holds no LoRA weights") }
        return LoRAAdapter(path: path, format: .gguf, naming: .gguf, targets: targets, architecture: file.string("general.architecture"))
    }
}
