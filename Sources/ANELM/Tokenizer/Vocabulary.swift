/// Token text → id, with texts compared by their exact Unicode scalars.
///
/// Swift's String equality is canonical equivalence, which would merge distinct tokens such as "Ω" (U+2126) and
/// "Ω" (U+03A9), or "é" and "e" + U+0301; SentencePiece vocabularies have both.
struct Vocabulary: Sequence, ExpressibleByDictionaryLiteral, Sendable {
    private var ids: [ExactString: Int] = [:]

    init(dictionaryLiteral elements: (String, Int)...) {
        for (token, id) in elements { ids[ExactString(token)] = id }
    }

    subscript(_ token: String) -> Int? {
        get { ids[ExactString(token)] }
        set { ids[ExactString(token)] = newValue }
    }

    var count: Int { ids.count }

    mutating func reserveCapacity(_ capacity: Int) { ids.reserveCapacity(capacity) }

    /// (token, id) pairs in no particular order.
    func makeIterator() -> AnyIterator<(String, Int)> {
        var inner = ids.makeIterator()
        return AnyIterator { inner.next().map { ($0.key.value, $0.value) } }
    }
}
