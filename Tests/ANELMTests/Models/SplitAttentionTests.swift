import XCTest
import ANELM

/// Decode splits each head's cached positions into spans across the pool and merges the spans'
/// outputs by their log-sum-exps; one thread attends over all positions at once. Everything else in a
/// step computes the same values whatever the thread count, so the two must give the same logits (up
/// to the merge's float rounding), with a plain cache, a sliding window and soft-capped scores.
final class SplitAttentionTests: XCTestCase {
    func testTinyLlama() throws { try checkSplitMatchesWhole("tiny-llama") }
    func testTinyGemma3SlidingWindowSoftcap() throws { try checkSplitMatchesWhole("tiny-gemma3-softcap") }

    func checkSplitMatchesWhole(_ fixtureName: String) throws {
        let fixture = try ModelFixture.load(fixtureName)
        let path = try fixture.modelPath()
        let whole = try ModelLoader.load(path, options: LoadOptions(threads: 1)).model
        let split = try ModelLoader.load(path, options: LoadOptions(threads: 2)).model
        var generator = SystemRandomNumberGenerator()
        let prompt = (0..<300).map { _ in Int.random(in: 0..<whole.vocabularySize, using: &generator) }
        let wholeState = whole.makeState(), splitState = split.makeState()
        var a = try whole.forward(prompt, state: wholeState, allPositions: false)
        var b = try split.forward(prompt, state: splitState, allPositions: false)
        for step in 0..<24 {   // positions 300…323: several spans of ≥ 64 positions each
            let worst = zip(a, b).map { abs($0 - $1) / max(1, abs($0)) }.max() ?? .infinity
            XCTAssertLessThan(worst, 1e-4, "\(fixtureName) step \(step)")
            let next = a.indices.max { a[$0] < a[$1] } ?? 0
            a = try whole.forward([next], state: wholeState, allPositions: false)
            b = try split.forward([next], state: splitState, allPositions: false)
        }
    }
}
