import Foundation

/// Perplexity of a text as llama.cpp's `llama-perplexity` computes it, so the numbers compare: the text is
/// tokenized once (with the tokenizer's BOS), cut into non-overlapping windows of `context` tokens (the tail that
/// does not fill a window is dropped), each window run from an empty state with its first token replaced by BOS
/// when the tokenizer adds one, and only the second half of each window scored (every scored token has at
/// least `context / 2` tokens before it).
public enum Perplexity {
    public struct Result: Sendable {
        public let perplexity: Double
        /// llama-perplexity's "±": the standard error of the mean negative log-likelihood, times the perplexity.
        public let uncertainty: Double
        public let windows: Int
        public let tokensScored: Int
        public let textTokens: Int
    }

    /// `progress(windowsDone, windows, perplexitySoFar)` after each window.
    public static func measure(
        model: LanguageModel, tokenizer: Tokenizer, text: String, context: Int, maxWindows: Int? = nil,
        progress: (Int, Int, Double) -> Void = { _, _, _ in }
    ) throws -> Result {
        guard context >= 4 else { throw ANELMError("--context must be at least 4, got \(context)") }
        guard context <= model.contextLength else {
            throw ANELMError("--context \(context) is longer than the \(model.contextLength) positions the model takes")
        }
        let tokens = tokenizer.encode(text, parseSpecialTokens: false, addSpecialTokens: true)
        let bos = tokenizer.bosToken.flatMap(tokenizer.tokenId)
        let addsBos = bos != nil && tokenizer.encode("a", parseSpecialTokens: false, addSpecialTokens: true).first == bos
        guard tokens.count >= 2 * context else {
            throw ANELMError("the text is \(tokens.count) tokens; perplexity with --context \(context) needs at least \(2 * context)")
        }
        var windows = tokens.count / context
        if let maxWindows { windows = min(windows, max(1, maxWindows)) }
        let first = context / 2
        let vocabulary = model.vocabularySize
        var nll = 0.0
        var nll2 = 0.0
        var count = 0
        for w in 0..<windows {
            let start = w * context
            var window = Array(tokens[start..<(start + context)])
            if addsBos, let bos { window[0] = bos }
            let state = model.makeState()
            _ = try model.forward(Array(window[..<first]), state: state, allPositions: false)
            // Logits of positions first..<context; position j predicts window[j + 1].
            let logits = try model.forward(Array(window[first...]), state: state, allPositions: true)
            for j in first..<(context - 1) {
                let row = (j - first) * vocabulary
                let target = window[j + 1]
                var largest = -Float.infinity
                for v in 0..<vocabulary { largest = max(largest, logits[row + v]) }
                var sum = 0.0
                for v in 0..<vocabulary { sum += Double(expf(logits[row + v] - largest)) }
                let logProbability = Double(logits[row + target] - largest) - log(sum)
                nll -= logProbability
                nll2 += logProbability * logProbability
                count += 1
            }
            progress(w + 1, windows, exp(nll / Double(count)))
        }
        let mean = nll / Double(count)
        var spread = nll2 / Double(count) - mean * mean
        spread = spread > 0 && count > 1 ? (spread / Double(count - 1)).squareRoot() : 0
        let ppl = exp(mean)
        return Result(perplexity: ppl, uncertainty: spread * ppl, windows: windows, tokensScored: count, textTokens: tokens.count)
    }
}
