import Foundation

extension SamplingParameters {
    /// What `chat`, `generate` and the server sample with when neither a flag nor a request says otherwise, for a
    /// model whose file suggests nothing: in the range llama.cpp and Ollama use. Greedy decoding with no penalty
    /// makes small models repeat themselves within a few answers. Callers drop the default repetition penalty
    /// when the temperature is 0 (exact greedy) and no penalty was asked for.
    public static let documentedDefaults = SamplingParameters(
        temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repetitionPenalty: 1.1, repetitionWindow: 64)

    /// `documentedDefaults` with the values the model's file sets: generation_config.json (`temperature`,
    /// `top_k`, `top_p`, `min_p`, `repetition_penalty`; `do_sample: false` means greedy) or GGUF's
    /// `general.sampling.*` keys. The seed is fresh.
    public static func defaults(for model: LoadedModel) -> SamplingParameters {
        var p = documentedDefaults
        p.seed = UInt64.random(in: 0...UInt64.max)
        switch model.source {
        case .huggingFace(let folder):
            guard let config = folder.generationConfig else { return p }
            func number(_ key: String) -> Double? { config[key]?.numberValue }
            if let t = number("temperature"), t >= 0, t <= 2 { p.temperature = Float(t) }
            if let k = config["top_k"]?.integerValue, k >= 0 { p.topK = k }
            if let v = number("top_p"), v > 0, v <= 1 { p.topP = Float(v) }
            if let v = number("min_p"), v >= 0, v <= 1 { p.minP = Float(v) }
            if let v = number("repetition_penalty"), v > 0, v <= 10 { p.repetitionPenalty = Float(v) }
            if config["do_sample"]?.boolValue == false { p.temperature = 0 }
        case .gguf(let file):
            if let t = file.double("general.sampling.temp"), t >= 0, t <= 2 { p.temperature = Float(t) }
            if let k = file.int("general.sampling.top_k"), k >= 0 { p.topK = k }
            if let v = file.double("general.sampling.top_p"), v > 0, v <= 1 { p.topP = Float(v) }
            if let v = file.double("general.sampling.min_p"), v >= 0, v <= 1 { p.minP = Float(v) }
            if let v = file.double("general.sampling.penalty_repeat"), v > 0, v <= 10 { p.repetitionPenalty = Float(v) }
            if let n = file.int("general.sampling.penalty_last_n"), n >= 0 { p.repetitionWindow = n }
        }
        return p
    }
}

extension Tokenizer {
    /// The bytes a token stands for inside a text (a special token as its text): what logprobs report.
    public func tokenBytes(_ id: Int) -> [UInt8] {
        guard id >= 0, id < vocabSize else { return [] }
        return bytes(of: [id], skipSpecialTokens: false, isFirst: false, exactByteRuns: false)
    }
}
