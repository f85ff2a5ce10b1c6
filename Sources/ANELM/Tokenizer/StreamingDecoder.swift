/// Streams text from tokens without ever emitting half of a multi-byte UTF-8 character.
public struct StreamingDecoder {
    private let tokenizer: Tokenizer
    private let skipSpecialTokens: Bool
    /// Bytes not yet emitted: at most an incomplete UTF-8 sequence at the end.
    private var pending: [UInt8] = []
    private var isFirst = true

    /// A decoder for one stream of ids from `tokenizer`.
    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one token and returns the text it completes (possibly empty).
    public mutating func append(_ token: Int) -> String {
        let bytes = tokenizer.bytes(of: [token], skipSpecialTokens: skipSpecialTokens, isFirst: isFirst, exactByteRuns: false)
        if bytes.isEmpty { return "" }
        isFirst = false
        var text = ""
        // With byte fallback only `<0xHH>` tokens can finish a character; any other token ends the run, and
        // `tokenizers` shows each byte of an unfinished one as U+FFFD.
        if !pending.isEmpty, tokenizer.hasByteFallback, !tokenizer.isByteFallbackToken(token) {
            text = String(repeating: "\u{FFFD}", count: pending.count)
            pending.removeAll()
        }
        pending.append(contentsOf: bytes)
        let cut = pending.count - Self.incompleteTailLength(pending)
        guard cut > 0 else { return text }
        text += String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    /// Whatever remains, with invalid bytes as U+FFFD.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        if tokenizer.hasByteFallback { return String(repeating: "\u{FFFD}", count: pending.count) }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of a trailing UTF-8 sequence that is valid so far but still missing bytes.
    static func incompleteTailLength(_ bytes: [UInt8]) -> Int {
        var continuation = 0
        var i = bytes.count - 1
        while i >= 0 && continuation < 3 && bytes[i] & 0xC0 == 0x80 {
            continuation += 1
            i -= 1
        }
        guard i >= 0 else { return 0 }
        let lead = bytes[i]
        let needed: Int
        switch lead {
        case 0xC2...0xDF: needed = 1
        case 0xE0...0xEF: needed = 2
        case 0xF0...0xF4: needed = 3
        default: return 0
        }
        guard continuation < needed else { return 0 }
        // The second byte of some leads is range-limited; an impossible prefix is not worth waiting for.
        if continuation >= 1 {
            let second = bytes[i + 1]
            switch lead {
            case 0xE0 where second < 0xA0, 0xED where second > 0x9F, 0xF0 where second < 0x90, 0xF4 where second > 0x8F:
                return 0
            default: break
            }
        }
        return continuation + 1
    }
}

extension String {
    /// The string for `bytes` when they are entirely valid UTF-8, else nil.
    init?(validatingUTF8Bytes bytes: [UInt8]) {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var scalars = String.UnicodeScalarView()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): scalars.append(scalar)
            case .emptyInput:
                self = String(scalars)
                return
            case .error: return nil
            }
        }
    }
}
