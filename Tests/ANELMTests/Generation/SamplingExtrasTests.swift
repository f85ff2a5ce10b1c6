import ANELM
import XCTest

/// Log-probabilities, logit bias, presence/frequency penalties, the repetition window and sampling defaults.
final class SamplingExtrasTests: XCTestCase {
    /// log-softmax in double precision, written out plainly: the reference the sampler is checked against.
    func logSoftmax(_ logits: [Float], temperature: Float = 1) -> [Double] {
        let scaled = logits.map { Double($0) / Double(temperature) }
        let m = scaled.max() ?? 0
        let total = scaled.reduce(0) { $0 + exp($1 - m) }
        return scaled.map { $0 - m - log(total) }
    }

    func testLogprobsAreTheLogSoftmaxOfTheLogitsSampledFrom() {
        let logits: [Float] = [0.5, 3, 2.9, -4, 1, 2.2]
        for temperature: Float in [0, 0.7, 1.3] {
            var sampler = Sampler(SamplingParameters(temperature: temperature, seed: 5))
            let sampled = sampler.sampleToken(logits, previous: [], topLogprobs: 3)
            let reference = logSoftmax(logits, temperature: temperature == 0 ? 1 : temperature)
            XCTAssertEqual(Double(sampled.logprob), reference[sampled.token], accuracy: 1e-5)
            XCTAssertEqual(sampled.top.map(\.token), [1, 2, 5], "best first")
            for alternative in sampled.top { XCTAssertEqual(Double(alternative.logprob), reference[alternative.token], accuracy: 1e-5) }
            if temperature == 0 { XCTAssertEqual(sampled.token, 1) }
        }
        // After penalties: the values follow the penalized logits (repetition penalty 2 on token 1).
        var penalized = Sampler(SamplingParameters(repetitionPenalty: 2))
        let after = penalized.sampleToken(logits, previous: [1], topLogprobs: 1)
        var changed = logits
        changed[1] /= 2
        XCTAssertEqual(after.token, 2)
        XCTAssertEqual(Double(after.logprob), logSoftmax(changed)[2], accuracy: 1e-5)
        // Masked tokens (a grammar) are never alternatives.
        var masked = logits
        masked[1] = -.infinity
        var sampler = Sampler(SamplingParameters())
        let m = sampler.sampleToken(masked, previous: [], topLogprobs: 20)
        XCTAssertEqual(m.top.count, 5)
        XCTAssertFalse(m.top.contains { $0.token == 1 })
    }

    func testLogitBiasForcesAndBansTokens() {
        let logits: [Float] = [0, 5, 4.9, -3, 1]
        var p = SamplingParameters()
        p.logitBias = [3: 100]
        var forced = Sampler(p)
        XCTAssertEqual(forced.sample(logits), 3)
        p.logitBias = [1: -100]
        var banned = Sampler(p)
        XCTAssertEqual(banned.sample(logits), 2)
        p.logitBias = [1: 101]
        XCTAssertThrowsError(try p.validate())
    }

    func testPresenceAndFrequencyPenaltiesCountGeneratedTokens() {
        // Greedy on fixed logits repeats token 1 without penalties; a frequency penalty of 0.06 lets token 2
        // (0.1 below) win after two picks of token 1, a presence penalty of 0.2 after one.
        let logits: [Float] = [0, 5, 4.9]
        var frequency = SamplingParameters()
        frequency.frequencyPenalty = 0.06
        var f = Sampler(frequency)
        XCTAssertEqual((0..<3).map { _ in f.sample(logits) }, [1, 1, 2])
        var presence = SamplingParameters()
        presence.presencePenalty = 0.2
        var p = Sampler(presence)
        XCTAssertEqual((0..<2).map { _ in p.sample(logits) }, [1, 2])
        frequency.frequencyPenalty = 2.5
        XCTAssertThrowsError(try frequency.validate())
    }

    func testRepetitionWindowOnlyLooksBack() {
        let logits: [Float] = [0, 5, 4.9]
        var windowed = Sampler(SamplingParameters(repetitionPenalty: 2, repetitionWindow: 2))
        // Token 1 is 3 tokens back: outside a window of 2, so not penalized.
        XCTAssertEqual(windowed.sample(logits, previous: [1, 0, 0]), 1)
        XCTAssertEqual(windowed.sample(logits, previous: [0, 0, 1]), 2)
    }

    func testGenerationChunksCarryLogprobsOfTheF32Logits() throws {
        let model = try ModelLoader.load(ModelFixture.directory.appendingPathComponent("tiny-llama").path, options: LoadOptions(precision: .f32))
        let prompt = [0, 100, 200, 300, 50]
        var chunks: [GenerationChunk] = []
        try model.makeSession().generate(
            prompt: prompt, parameters: GenerationParameters(maxTokens: 4, sampling: SamplingParameters(), stopAtEndOfSequence: false, logprobs: 2)
        ) { chunk in
            chunks.append(chunk)
            return true
        }
        XCTAssertEqual(chunks.count, 4)
        // Each token's logprob is the log-softmax of the model's logits after the tokens before it.
        var sequence = prompt
        for chunk in chunks {
            let logprob = try XCTUnwrap(chunk.logprob)
            let logits = try model.model.forward(sequence, state: model.model.makeState(), allPositions: false)
            let reference = logSoftmax(logits)
            XCTAssertEqual(logprob.token, chunk.token)
            XCTAssertEqual(Double(logprob.logprob), reference[chunk.token], accuracy: 1e-4)
            XCTAssertEqual(logprob.top.count, 2)
            XCTAssertEqual(logprob.top.first?.token, chunk.token, "greedy picks the best")
            sequence.append(chunk.token)
        }
    }

    func testDefaultsComeFromGenerationConfigElseDocumented() throws {
        let folder = temporaryFile("tiny-llama-generation-config")
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.copyItem(at: ModelFixture.directory.appendingPathComponent("tiny-llama"), to: folder)
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = folder.appendingPathComponent("generation_config.json")
        try Data(#"{"temperature": 0.6, "top_p": 0.9, "do_sample": true}"#.utf8).write(to: config)
        let configured = SamplingParameters.defaults(for: try ModelLoader.load(folder.path))
        XCTAssertEqual(configured.temperature, 0.6)
        XCTAssertEqual(configured.topP, 0.9)
        XCTAssertEqual(configured.topK, SamplingParameters.documentedDefaults.topK)
        XCTAssertEqual(configured.repetitionPenalty, 1.1)
        try Data(#"{"do_sample": false}"#.utf8).write(to: config)
        XCTAssertEqual(SamplingParameters.defaults(for: try ModelLoader.load(folder.path)).temperature, 0, "do_sample false is greedy")
        try FileManager.default.removeItem(at: config)
        let plain = SamplingParameters.defaults(for: try ModelLoader.load(folder.path))
        XCTAssertEqual(plain.temperature, 0.8)
        XCTAssertEqual(plain.topK, 40)
        XCTAssertEqual(plain.minP, 0.05)
        XCTAssertEqual(plain.repetitionWindow, 64)
    }

    /// The top-k selection against the plain reference (sort the whole vocabulary, keep the first k), on random
    /// logits with many ties and masked tokens, and k from 1 to past the vocabulary.
    func testMostLikelyEqualsSortingTheVocabulary() {
        var random = SeededGenerator(seed: 11)
        for vocabulary in [1, 2, 7, 100, 4_099] {
            for trial in 0..<4 {
                let logits: [Float] = (0..<vocabulary).map { _ in
                    let r = random.next()
                    if r % 9 == 0 { return -.infinity }
                    return trial % 2 == 0 ? Float(r % 7) : Float(Int(r >> 40) % 2_001 - 1_000) / 37
                }
                let sorted = logits.indices.filter { logits[$0] > -.infinity }.sorted {
                    logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1)
                }
                for k in [1, 2, 3, 40, vocabulary, vocabulary + 5] {
                    XCTAssertEqual(mostLikely(logits, count: k), Array(sorted.prefix(k)), "vocabulary \(vocabulary), trial \(trial), k \(k)")
                }
            }
        }
    }

    /// Top-k sampling draws exactly what the plain algorithm draws (sort everything, cut to k, softmax, top-p, min-p,
    /// one draw from the same generator), over many seeds.
    func testTopKSamplingMatchesThePlainAlgorithm() {
        var random = SeededGenerator(seed: 3)
        let logits: [Float] = (0..<5_000).map { _ in Float(Int(random.next() >> 40) % 4_001 - 2_000) / 400 }
        let parameters = SamplingParameters(temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05)
        for seed in UInt64(0)..<200 {
            var p = parameters
            p.seed = seed
            var sampler = Sampler(p)
            XCTAssertEqual(sampler.sample(logits), plainTopK(logits, p), "seed \(seed)")
        }
    }

    private func plainTopK(_ logits: [Float], _ p: SamplingParameters) -> Int {
        var random = SeededGenerator(seed: p.seed)
        var candidates = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        candidates = Array(candidates.prefix(p.topK))
        let top = logits[candidates[0]] / p.temperature
        var probabilities = candidates.map { expf(logits[$0] / p.temperature - top) }
        let total = probabilities.reduce(0, +)
        var cumulative: Float = 0
        for (i, q) in probabilities.enumerated() {
            cumulative += q / total
            if cumulative >= p.topP {
                candidates = Array(candidates.prefix(i + 1))
                probabilities = Array(probabilities.prefix(i + 1))
                break
            }
        }
        let keep = probabilities.firstIndex { $0 < p.minP * probabilities[0] } ?? probabilities.count
        candidates = Array(candidates.prefix(keep))
        probabilities = Array(probabilities.prefix(keep))
        var draw = Float(Double(random.next() >> 11) / Double(1 << 53)) * probabilities.reduce(0, +)
        for (i, q) in probabilities.enumerated() {
            draw -= q
            if draw < 0 { return candidates[i] }
        }
        return candidates[candidates.count - 1]
    }
}
