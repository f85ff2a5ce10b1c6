/// Turns generated tokens into text that can be shown as it grows: never half a UTF-8 character,
/// and never the beginning of a stop string that may still complete.
struct TextAssembler {
    private var decoder: StreamingDecoder
    private let stopStrings: [String]
    /// Text decoded but held back because it may be the start of a stop string.
    private var pending = ""
    /// Everything released so far.
    private(set) var text = ""

    init(tokenizer: Tokenizer, stopStrings: [String]) {
        decoder = StreamingDecoder(tokenizer: tokenizer)
        self.stopStrings = stopStrings.filter { !$0.isEmpty }
    }

    /// Adds a token; returns the newly releasable text and whether a stop string was completed
    /// (the stop string and anything after it are dropped).
    mutating func append(_ token: Int) -> (text: String, stopped: Bool) {
        pending += decoder.append(token)
        return release()
    }

    /// Releases what is held back at the end of generation.
    mutating func finish() -> String {
        pending += decoder.flush()
        let (out, _) = release()
        let rest = pending
        pending = ""
        text += rest
        return out + rest
    }

    private mutating func release() -> (text: String, stopped: Bool) {
        let scalars = Array(pending.unicodeScalars)
        // The earliest complete stop string ends generation.
        var earliest: Int?
        for stop in stopStrings {
            if let at = firstIndex(of: Array(stop.unicodeScalars), in: scalars), at < (earliest ?? .max) { earliest = at }
        }
        if let earliest {
            let out = string(scalars[..<earliest])
            text += out
            pending = ""
            return (out, true)
        }
        // Hold back the longest end of `pending` that some stop string begins with.
        let hold = stopStrings.map { longestSuffix(of: scalars, thatStarts: Array($0.unicodeScalars)) }.max() ?? 0
        let out = string(scalars[..<(scalars.count - hold)])
        pending = string(scalars[(scalars.count - hold)...])
        text += out
        return (out, false)
    }
}

private func string(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
    var s = String.UnicodeScalarView()
    s.append(contentsOf: scalars)
    return String(s)
}

private func firstIndex(of needle: [Unicode.Scalar], in haystack: [Unicode.Scalar]) -> Int? {
    guard !needle.isEmpty, needle.count <= haystack.count else { return nil }
    for i in 0...(haystack.count - needle.count) where haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
    return nil
}

private func longestSuffix(of text: [Unicode.Scalar], thatStarts stop: [Unicode.Scalar]) -> Int {
    var k = min(text.count, stop.count - 1)
    while k > 0 {
        if text[(text.count - k)...].elementsEqual(stop[..<k]) { return k }
        k -= 1
    }
    return 0
}
