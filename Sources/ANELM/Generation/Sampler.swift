import Foundation

/// How the next token is picked from the logits.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 picks the most likely token (greedy).
    public var temperature: Float = 0
    /// Keep the k most likely tokens; 0 keeps all.
    public var topK: Int = 0
    /// Keep the smallest set whose probability reaches p; 1 keeps all.
    public var topP: Float = 1
    /// Drop tokens less likely than minP × the top probability; 0 keeps all.
    public var minP: Float = 0
    /// > 1 makes tokens already in the sequence less likely (as transformers' `repetition_penalty`).
    public var repetitionPenalty: Float = 1
    /// The same seed gives the same tokens.
    public var seed: UInt64 = UInt64.random(in: 0...UInt64.max)

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1, seed: UInt64? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        if let seed { self.seed = seed }
    }

    /// Rejects values no sampler could honour.
    public func validate() throws {
        guard temperature.isFinite, temperature >= 0 else { throw ANELMError("temperature must be a finite number ≥ 0, got \(temperature)") }
        guard topK >= 0 else { throw ANELMError("top-k must be ≥ 0, got \(topK)") }
        guard topP.isFinite, topP > 0, topP <= 1 else { throw ANELMError("top-p must be in (0, 1], got \(topP)") }
        guard minP.isFinite, minP >= 0, minP <= 1 else { throw ANELMError("min-p must be in [0, 1], got \(minP)") }
        guard repetitionPenalty.isFinite, repetitionPenalty > 0 else { throw ANELMError("repetition penalty must be > 0, got \(repetitionPenalty)") }
    }
}

/// A small, fast, seedable generator (SplitMix64): same seed, same sequence, on every platform.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Picks tokens from logits: repetition penalty, then temperature, top-k, top-p, min-p, then a draw.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var random: SeededGenerator

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        random = SeededGenerator(seed: parameters.seed)
    }

    public mutating func sample(_ logits: [Float], previous: [Int] = []) -> Int {
        var logits = logits
        let p = parameters
        if p.repetitionPenalty != 1 {
            for id in Set(previous) where id >= 0 && id < logits.count {
                logits[id] = logits[id] > 0 ? logits[id] / p.repetitionPenalty : logits[id] * p.repetitionPenalty
            }
        }
        if p.temperature == 0 { return argmax(logits) }

        // Candidates sorted by logit, most likely first; top-k cuts before the softmax. Tokens masked to
        // -infinity (a grammar) are never candidates, so rounding in the draw cannot pick one.
        var candidates = logits.indices.filter { logits[$0] > -.infinity }
        if candidates.isEmpty { return argmax(logits) }
        candidates.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if p.topK > 0, p.topK < candidates.count { candidates.removeSubrange(p.topK...) }
        let top = logits[candidates[0]] / p.temperature
        var probabilities = candidates.map { expf(logits[$0] / p.temperature - top) }
        var total = probabilities.reduce(0, +)
        if p.topP < 1 {
            var cumulative: Float = 0
            var keep = probabilities.count
            for (i, q) in probabilities.enumerated() {
                cumulative += q / total
                if cumulative >= p.topP {
                    keep = i + 1
                    break
                }
            }
            candidates.removeSubrange(keep...)
            probabilities.removeSubrange(keep...)
        }
        if p.minP > 0 {
            let threshold = p.minP * probabilities[0]  // probabilities[0] is the largest
            let keep = probabilities.firstIndex { $0 < threshold } ?? probabilities.count
            candidates.removeSubrange(keep...)
            probabilities.removeSubrange(keep...)
        }
        total = probabilities.reduce(0, +)
        var draw = Float(Double(random.next() >> 11) / Double(1 << 53)) * total
        for (i, q) in probabilities.enumerated() {
            draw -= q
            if draw < 0 { return candidates[i] }
        }
        return candidates[candidates.count - 1]
    }
}

/// The index of the largest value (the first one on ties, as torch.argmax).
public func argmax(_ values: [Float]) -> Int {
    var best = 0
    for i in values.indices where values[i] > values[best] { best = i }
    return best
}
