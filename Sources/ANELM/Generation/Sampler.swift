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
    /// How many of the sequence's last tokens the repetition penalty looks at; 0 = all of them (transformers).
    public var repetitionWindow: Int = 0
    /// OpenAI's `presence_penalty`: subtracted from the logit of every token generated so far.
    public var presencePenalty: Float = 0
    /// OpenAI's `frequency_penalty`: subtracted once for each time the token was generated so far.
    public var frequencyPenalty: Float = 0
    /// OpenAI's `logit_bias`: added to these tokens' logits before anything else.
    public var logitBias: [Int: Float] = [:]
    /// The same seed gives the same tokens.
    public var seed: UInt64 = UInt64.random(in: 0...UInt64.max)

    public init(
        temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1, repetitionWindow: Int = 0,
        seed: UInt64? = nil
    ) {
        self.repetitionWindow = repetitionWindow
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
        guard repetitionWindow >= 0 else { throw ANELMError("the repetition window must be ≥ 0, got \(repetitionWindow)") }
        for (name, value) in [("presence", presencePenalty), ("frequency", frequencyPenalty)] {
            guard value.isFinite, abs(value) <= 2 else { throw ANELMError("the \(name) penalty must be between -2 and 2, got \(value)") }
        }
        for (token, bias) in logitBias {
            guard token >= 0 else { throw ANELMError("logit bias: token ids are ≥ 0, got \(token)") }
            guard bias.isFinite, abs(bias) <= 100 else { throw ANELMError("logit bias of token \(token) must be between -100 and 100, got \(bias)") }
        }
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

/// A token's log-probability (natural log) under the distribution it was sampled from.
public struct TokenLogprob: Sendable, Equatable {
    public let token: Int
    public let logprob: Float
}

/// A sampled token with its log-probability and, when asked for, the most likely alternatives (best first).
public struct SampledToken: Sendable, Equatable {
    public let token: Int
    public let logprob: Float
    public let top: [TokenLogprob]
}

/// Picks tokens from logits: logit bias, repetition / presence / frequency penalties, then temperature, top-k,
/// top-p, min-p, then a draw. It counts the tokens it picks, for the presence and frequency penalties.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var random: SeededGenerator
    /// How often each token was picked by this sampler.
    private var generatedCounts: [Int: Int] = [:]

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        random = SeededGenerator(seed: parameters.seed)
    }

    public mutating func sample(_ logits: [Float], previous: [Int] = []) -> Int {
        sampleToken(logits, previous: previous, topLogprobs: nil).token
    }

    /// Samples a token after `previous` (the sequence so far, for the repetition penalty). With `topLogprobs`
    /// set, also the log-softmax of the logits sampled from — after bias, penalties, any grammar mask (masked
    /// tokens are never listed) and temperature (temperature 0, greedy, counts as 1) — for the token and the
    /// `topLogprobs` most likely ones; top-k/top-p/min-p cut candidates but do not renormalise these values.
    public mutating func sampleToken(_ logits: [Float], previous: [Int], topLogprobs: Int?) -> SampledToken {
        var logits = logits
        applyPenalties(to: &logits, previous: previous)
        let token = pick(logits)
        generatedCounts[token, default: 0] += 1
        guard let topLogprobs else { return SampledToken(token: token, logprob: 0, top: []) }
        let scale = parameters.temperature > 0 ? 1 / parameters.temperature : 1
        var maximum = -Float.infinity
        for l in logits where l > maximum { maximum = l }
        var sum: Double = 0
        for l in logits where l > -.infinity { sum += exp(Double((l - maximum) * scale)) }
        let logTotal = Double(maximum * scale) + log(sum)
        func logprob(_ id: Int) -> Float { Float(Double(logits[id] * scale) - logTotal) }
        let top = mostLikely(logits, count: topLogprobs).map { TokenLogprob(token: $0, logprob: logprob($0)) }
        return SampledToken(token: token, logprob: logprob(token), top: top)
    }

    private func applyPenalties(to logits: inout [Float], previous: [Int]) {
        let p = parameters
        for (id, bias) in p.logitBias where id < logits.count { logits[id] += bias }
        if p.repetitionPenalty != 1 {
            let window = p.repetitionWindow > 0 ? previous.suffix(p.repetitionWindow) : previous[...]
            for id in Set(window) where id >= 0 && id < logits.count {
                logits[id] = logits[id] > 0 ? logits[id] / p.repetitionPenalty : logits[id] * p.repetitionPenalty
            }
        }
        if p.presencePenalty != 0 || p.frequencyPenalty != 0 {
            for (id, count) in generatedCounts where id < logits.count {
                logits[id] -= p.presencePenalty + p.frequencyPenalty * Float(count)
            }
        }
    }

    private mutating func pick(_ logits: [Float]) -> Int {
        let p = parameters
        if p.temperature == 0 { return argmax(logits) }
        // Candidates sorted by logit, most likely first; top-k cuts before the softmax. Tokens masked to
        // -infinity (a grammar) are never candidates, so rounding in the draw cannot pick one.
        var candidates: [Int]
        if p.topK > 0 {
            candidates = mostLikely(logits, count: p.topK)  // without sorting the whole vocabulary (~3 ms at 49k tokens)
        } else {
            candidates = logits.indices.filter { logits[$0] > -.infinity }
            candidates.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        }
        if candidates.isEmpty { return argmax(logits) }
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

/// The ids of the `count` largest finite logits, largest first, the lower id first on ties: the first `count` of the
/// whole vocabulary sorted that way, found with one pass and a short sorted list.
public func mostLikely(_ logits: [Float], count: Int) -> [Int] {
    guard count > 0 else { return [] }
    var best: [Int] = []
    best.reserveCapacity(count + 1)
    for id in logits.indices where logits[id] > -.infinity {
        // Ids come in increasing order, so an equal logit never displaces an earlier id.
        if best.count == count, let last = best.last, !(logits[id] > logits[last]) { continue }
        var low = 0
        var high = best.count
        while low < high {
            let middle = (low + high) / 2
            if logits[best[middle]] >= logits[id] { low = middle + 1 } else { high = middle }
        }
        best.insert(id, at: low)
        if best.count > count { best.removeLast() }
    }
    return best
}

/// The index of the largest value (the first one on ties, as torch.argmax).
public func argmax(_ values: [Float]) -> Int {
    var best = 0
    for i in values.indices where values[i] > values[best] { best = i }
    return best
}
