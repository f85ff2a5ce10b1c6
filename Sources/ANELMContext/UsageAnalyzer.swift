import ANELM
import Foundation

/// Decides which of a prompt's numbered sources an answer used. The rule, in order (the first that holds marks
/// the source used; a source none holds for is ignored):
/// 1. **Citation** — the answer cites its number: `[2]`, `[1, 2]`, `[1][2]`.
/// 2. **Shared wording** — the answer and the source share a run of `ngram` (default 4) consecutive words
///    (lowercased letters and digits; a run of the question's own words does not count, since restating the
///    question is not using a source).
/// 3. **Same meaning** — some sentence of the answer (at least `minimumSentenceWords` words) has a cosine of at
///    least `similarityThreshold` with the source's vector, under the store's embedder.
/// An empty answer uses nothing.
public struct UsageAnalyzer: Sendable {
    public var ngram = 4
    public var similarityThreshold: Float = 0.8
    public var minimumSentenceWords = 4

    public init() {}

    public enum Reason: String, Sendable {
        case citation, wording, meaning
    }

    /// For each source (its citation number, text and unit vector), why it counts as used, or nil if ignored.
    /// `embed` gives unit vectors for the answer's sentences (nil: the meaning rule is not applied).
    public func analyze(
        answer: String, question: String, sources: [(number: Int, text: String, vector: [Float])], embed: (([String]) throws -> [[Float]])?
    ) throws -> [Int: Reason] {
        var reasons: [Int: Reason] = [:]
        guard !answer.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return reasons }
        let cited = Self.citations(in: answer)
        let questionGrams = ngrams(Retriever.tokens(question))
        let answerGrams = ngrams(Retriever.tokens(answer)).subtracting(questionGrams)
        for source in sources {
            if cited.contains(source.number) {
                reasons[source.number] = .citation
            } else if !answerGrams.isDisjoint(with: ngrams(Retriever.tokens(source.text))) {
                reasons[source.number] = .wording
            }
        }
        let remaining = sources.filter { reasons[$0.number] == nil }
        guard let embed, !remaining.isEmpty else { return reasons }
        let sentences = Self.sentences(answer).filter { Retriever.tokens($0).count >= minimumSentenceWords }
        guard !sentences.isEmpty else { return reasons }
        let vectors = try embed(sentences)
        for source in remaining {
            for vector in vectors where vector.count == source.vector.count {
                if zip(vector, source.vector).reduce(Float(0), { $0 + $1.0 * $1.1 }) >= similarityThreshold {
                    reasons[source.number] = .meaning
                    break
                }
            }
        }
        return reasons
    }

    func ngrams(_ words: [String]) -> Set<[String]> {
        guard words.count >= ngram else { return [] }
        return Set((0...(words.count - ngram)).map { Array(words[$0..<($0 + ngram)]) })
    }

    /// Numbers in square brackets: `[3]`, `[1, 2]`, `[1][4]` (numbers separated by commas or spaces only).
    public static func citations(in text: String) -> Set<Int> {
        var found = Set<Int>()
        let scalars = Array(text.unicodeScalars)
        var i = 0
        while i < scalars.count {
            guard scalars[i] == "[" else {
                i += 1
                continue
            }
            var j = i + 1
            var numbers: [Int] = []
            var digits = ""
            var valid = true
            while j < scalars.count && scalars[j] != "]" {
                let s = scalars[j]
                if ("0"..."9").contains(s) {
                    digits.unicodeScalars.append(s)
                } else if s == "," || s == " " {
                    if let n = Int(digits) { numbers.append(n) }
                    digits = ""
                } else {
                    valid = false
                    break
                }
                j += 1
            }
            if valid && j < scalars.count {
                if let n = Int(digits) { numbers.append(n) }
                found.formUnion(numbers)
            }
            i = max(j, i + 1)
        }
        return found
    }

    /// Sentences: split after `.`, `!`, `?` followed by whitespace, and at line breaks.
    public static func sentences(_ text: String) -> [String] {
        var out: [String] = []
        var current = ""
        var previousEnds = false
        for ch in text {
            if ch.isNewline || (previousEnds && ch.isWhitespace) {
                let s = current.trimmingCharacters(in: .whitespaces)
                if !s.isEmpty { out.append(s) }
                current = ""
                previousEnds = false
                continue
            }
            current.append(ch)
            previousEnds = ch == "." || ch == "!" || ch == "?"
        }
        let s = current.trimmingCharacters(in: .whitespaces)
        if !s.isEmpty { out.append(s) }
        return out
    }
}
