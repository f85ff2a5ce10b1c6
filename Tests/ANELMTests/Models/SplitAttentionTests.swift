import ANELM
import XCTest

/// Decode splits each head's cached positions into spans across the pool and merges the spans'
/// outputs by their log-sum-exps; one thread attends over all positions at once. Everything else in a
/// step computes the same values whatever the thread count (the prompt's prefill agrees exactly), so
/// from the same cache one decode step must give the same logits up to the merge's float rounding —
/// with a plain cache, a sliding window and soft-capped scores.
///
/// With the f32 cache that rounding is all there is (measured ≤ 6e-6 relative). With the default f16
/// cache the step's new keys and values are rounded to f16 after layers whose inputs already differ by
/// that rounding, so now and then one lands an f16 ulp (4.9e-4 relative) away, and one in ~40 steps
/// moves the logits by up to ~2e-4 (measured): its bound is the cache's precision, not the merge's.
/// Later steps are not compared, as such flips accumulate in the cache.
final class SplitAttentionTests: XCTestCase {
    func testTinyLlama() throws {
        try checkSplitMatchesWhole("tiny-llama", precision: .f32, tolerance: 5e-5)
        try checkSplitMatchesWhole("tiny-llama", precision: .auto, tolerance: 1e-3)
    }

    func testTinyGemma3SlidingWindowSoftcap() throws {
        try checkSplitMatchesWhole("tiny-gemma3-softcap", precision: .f32, tolerance: 5e-5)
        try checkSplitMatchesWhole("tiny-gemma3-softcap", precision: .auto, tolerance: 1e-3)
    }

    func checkSplitMatchesWhole(_ fixtureName: String, precision: Precision, tolerance: Float) throws {
        let fixture = try ModelFixture.load(fixtureName)
        let path = try fixture.modelPath()
        let whole = try ModelLoader.load(path, options: LoadOptions(precision: precision, threads: 1)).model
        let split = try ModelLoader.load(path, options: LoadOptions(precision: precision, threads: 2)).model
        var generator = SeededGenerator(seed: 3)
        // From below one span (64 positions) to several per thread, and lengths that end spans mid-way.
        for length in [40, 64, 65, 100, 129, 200, 255, 256, 300, 333, 420, 509] {
            let prompt = (0..<length).map { _ in Int.random(in: 0..<whole.vocabularySize, using: &generator) }
            let wholeState = whole.makeState()
            let splitState = split.makeState()
            let prefilled = try whole.forward(prompt, state: wholeState, allPositions: false)
            XCTAssertEqual(
                prefilled, try split.forward(prompt, state: splitState, allPositions: false),
                "\(fixtureName) \(precision): prefill of \(length) tokens")
            let next = prefilled.indices.max { prefilled[$0] < prefilled[$1] } ?? 0
            let a = try whole.forward([next], state: wholeState, allPositions: false)
            let b = try split.forward([next], state: splitState, allPositions: false)
            let worst = zip(a, b).map { abs($0 - $1) / max(1, abs($0)) }.max() ?? .infinity
            XCTAssertLessThan(worst, tolerance, "\(fixtureName) \(precision): decode after \(length) positions")
        }
    }
}
