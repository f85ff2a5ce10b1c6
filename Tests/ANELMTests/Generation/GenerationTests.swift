import ANELM
import XCTest

/// Sampling, stopping and streaming on the committed tiny Llama folder (fast, deterministic).
final class GenerationTests: XCTestCase {
    static let model: LoadedModel? = try? ModelLoader.load(
        ModelFixture.directory.appendingPathComponent("tiny-llama").path, options: LoadOptions(precision: .f32))

    func loaded() throws -> LoadedModel { try XCTUnwrap(Self.model, "tiny-llama fixture did not load") }
    let prompt = [0, 100, 200, 300, 50]

    func generate(_ sampling: SamplingParameters, max: Int = 24, stops: [String] = [], eos: Bool = false) throws -> GenerationResult {
        try loaded().makeSession().generate(
            prompt: prompt, parameters: GenerationParameters(maxTokens: max, sampling: sampling, stopStrings: stops, stopAtEndOfSequence: eos))
    }

    func testSameSeedSameTokensOtherSeedOtherTokens() throws {
        let hot = SamplingParameters(temperature: 1.5, seed: 7)
        let a = try generate(hot)
        let b = try generate(hot)
        XCTAssertEqual(a.tokens, b.tokens)
        var other = hot
        other.seed = 8
        XCTAssertNotEqual(try generate(other).tokens, a.tokens)
    }

    func testTopKOneAndTinyTopPAndFullMinPAreGreedy() throws {
        let greedy = try generate(SamplingParameters()).tokens
        XCTAssertEqual(try generate(SamplingParameters(temperature: 2, topK: 1, seed: 1)).tokens, greedy)
        XCTAssertEqual(try generate(SamplingParameters(temperature: 2, topP: 1e-6, seed: 2)).tokens, greedy)
        XCTAssertEqual(try generate(SamplingParameters(temperature: 2, minP: 1, seed: 3)).tokens, greedy)
    }

    func testSamplerFiltersOnKnownLogits() {
        let logits: [Float] = [0, 5, 4.9, -3, 1]
        // top-k 2 at high temperature only ever draws ids 1 and 2.
        var sampler = Sampler(SamplingParameters(temperature: 5, topK: 2, seed: 11))
        let draws = Set((0..<200).map { _ in sampler.sample(logits) })
        XCTAssertEqual(draws, [1, 2])
        // A strong repetition penalty moves greedy away from a repeated token (transformers' rule:
        // positive logits divided, negative multiplied).
        var penalized = Sampler(SamplingParameters(repetitionPenalty: 2))
        XCTAssertEqual(penalized.sample(logits, previous: [1]), 2)
        XCTAssertEqual(argmax(logits), 1)
    }

    func testMaxTokensAndLengthReason() throws {
        let r = try generate(SamplingParameters(), max: 5)
        XCTAssertEqual(r.tokens.count, 5)
        XCTAssertEqual(r.finishReason, .length)
    }

    func testStopStringCutsTextAndStops() throws {
        let full = try generate(SamplingParameters(), max: 24)
        // Take a piece from the middle of the greedy text as a stop string.
        let scalars = Array(full.text.unicodeScalars)
        guard scalars.count > 8 else { throw XCTSkip("greedy text too short") }
        var stop = String.UnicodeScalarView()
        stop.append(contentsOf: scalars[4..<7])
        let cut = try generate(SamplingParameters(), max: 24, stops: [String(stop)])
        XCTAssertEqual(cut.finishReason, .stop)
        XCTAssertTrue(full.text.hasPrefix(cut.text), "\(cut.text) is not a prefix of \(full.text)")
        XCTAssertFalse(cut.text.contains(String(stop)))
        XCTAssertLessThan(cut.tokens.count, full.tokens.count)
    }

    func testEndOfSequenceStops() throws {
        let m = try loaded()
        let eos = try XCTUnwrap(m.endOfSequenceIds.first)
        // Sample hot until EOS or the length limit: wherever EOS appears, it is the last token.
        let r = try m.makeSession().generate(
            prompt: prompt, parameters: GenerationParameters(maxTokens: 200, sampling: SamplingParameters(temperature: 3, seed: 5), stopAtEndOfSequence: true))
        if let i = r.tokens.firstIndex(of: eos) {
            XCTAssertEqual(i, r.tokens.count - 1)
            XCTAssertEqual(r.finishReason, .stop)
        } else {
            XCTAssertEqual(r.finishReason, .length)
        }
    }

    func testStreamYieldsTheSameTokensAndCanBeCancelled() async throws {
        let m = try loaded()
        let expected = try generate(SamplingParameters(), max: 16).tokens
        var streamed: [Int] = []
        for try await chunk in m.makeSession().stream(prompt: prompt, parameters: GenerationParameters(maxTokens: 16, stopAtEndOfSequence: false)) {
            streamed.append(chunk.token)
        }
        XCTAssertEqual(streamed, expected)

        // Breaking out of the loop cancels the generation.
        var taken = 0
        for try await _ in m.makeSession().stream(prompt: prompt, parameters: GenerationParameters(maxTokens: 10_000, stopAtEndOfSequence: false)) {
            taken += 1
            if taken == 3 { break }
        }
        XCTAssertEqual(taken, 3)
    }

    func testPromptCacheReusesPrefix() throws {
        let session = try loaded().makeSession()
        let first = try session.generate(prompt: prompt, parameters: GenerationParameters(maxTokens: 4, stopAtEndOfSequence: false))
        XCTAssertEqual(first.prefilledTokens, prompt.count)
        let extended = prompt + first.tokens + [7, 8]
        let second = try session.generate(prompt: extended, parameters: GenerationParameters(maxTokens: 4, stopAtEndOfSequence: false))
        // Everything up to the last generated token was cached (the last one was never fed back).
        XCTAssertEqual(second.prefilledTokens, 3)
        // And the continuation equals a fresh run on the same prompt.
        let fresh = try loaded().makeSession().generate(prompt: extended, parameters: GenerationParameters(maxTokens: 4, stopAtEndOfSequence: false))
        XCTAssertEqual(second.tokens, fresh.tokens)
    }

    func testBadParametersAreErrors() throws {
        let session = try loaded().makeSession()
        XCTAssertThrowsError(try session.generate(prompt: [], parameters: GenerationParameters()))
        XCTAssertThrowsError(try session.generate(prompt: [999_999], parameters: GenerationParameters()))
        XCTAssertThrowsError(try session.generate(prompt: prompt, parameters: GenerationParameters(sampling: SamplingParameters(topP: 0))))
        XCTAssertThrowsError(try session.generate(prompt: Array(repeating: 5, count: 600), parameters: GenerationParameters()))
    }
}
