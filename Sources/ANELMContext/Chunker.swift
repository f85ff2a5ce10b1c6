import ANELM
import Foundation

/// A piece of a document to embed and retrieve: its text is exactly the source's bytes `startByte..<endByte`.
public struct Chunk: Sendable, Equatable {
    public var text: String
    public var startByte: Int
    public var endByte: Int
    /// The markdown headings above the chunk, outermost first, joined by " › ".
    public var headingPath: String
    public var tokenCount: Int

    public init(text: String, startByte: Int, endByte: Int, headingPath: String, tokenCount: Int) {
        (self.text, self.startByte, self.endByte, self.headingPath, self.tokenCount) = (text, startByte, endByte, headingPath, tokenCount)
    }
}

/// Cuts a text into chunks of at most `maxTokens` tokens along its own boundaries: paragraphs (blank lines) and,
/// in markdown, headings (a heading starts a new chunk). A paragraph longer than a chunk is cut at lines, then
/// at whitespace, then anywhere. Consecutive chunks of one section share up to `overlapTokens` tokens: the last
/// paragraphs of a chunk open the next, so a fact that straddles a boundary is whole in one of them.
public struct Chunker: Sendable {
    public var maxTokens: Int
    public var overlapTokens: Int

    public init(maxTokens: Int = 200, overlapTokens: Int = 40) throws {
        guard maxTokens >= 8 else { throw ANELMError("chunks need at least 8 tokens (--chunk-tokens is \(maxTokens))") }
        guard overlapTokens >= 0, overlapTokens < maxTokens / 2 else {
            throw ANELMError("--overlap-tokens must be ≥ 0 and less than half of --chunk-tokens (\(maxTokens)); it is \(overlapTokens)")
        }
        self.maxTokens = maxTokens
        self.overlapTokens = overlapTokens
    }

    /// A block of the source: a paragraph, a heading line, or a piece of a paragraph too long for one chunk.
    struct Unit {
        var start: Int
        var end: Int
        var tokens: Int
        var isHeading: Bool
        var headingPath: [String]
    }

    /// The chunks of `text`; `markdown` turns `#` lines into headings. `countTokens` is the embedder's count.
    public func chunks(of text: String, markdown: Bool, countTokens: (String) throws -> Int) throws -> [Chunk] {
        let bytes = Array(text.utf8)
        func string(_ start: Int, _ end: Int) -> String { String(decoding: bytes[start..<end], as: UTF8.self) }
        var units: [Unit] = []
        for block in paragraphs(bytes, markdown: markdown) {
            let tokens = try countTokens(string(block.start, block.end))
            if tokens <= maxTokens {
                units.append(Unit(start: block.start, end: block.end, tokens: tokens, isHeading: block.isHeading, headingPath: block.headingPath))
            } else {
                for piece in try split(bytes, block.start, block.end, tokens: tokens, countTokens: countTokens) {
                    units.append(Unit(start: piece.0, end: piece.1, tokens: piece.2, isHeading: false, headingPath: block.headingPath))
                }
            }
        }
        // Greedy packing; a heading or a chunk that would overflow closes the current one.
        var result: [Chunk] = []
        var current: [Unit] = []
        var currentTokens = 0
        func emit() throws {
            guard let first = current.first, let last = current.last else { return }
            let text = string(first.start, last.end)
            let path = (current.first(where: { !$0.isHeading }) ?? first).headingPath
            result.append(Chunk(text: text, startByte: first.start, endByte: last.end, headingPath: path.joined(separator: " › "), tokenCount: try countTokens(text)))
        }
        for unit in units {
            let headingBreak = unit.isHeading && current.contains(where: { !$0.isHeading })
            if !current.isEmpty && (headingBreak || currentTokens + unit.tokens > maxTokens) {
                try emit()
                // Overlap: the previous chunk's last units (not all of them, so every chunk moves on), same section only.
                var carried: [Unit] = []
                var carriedTokens = 0
                if !headingBreak {
                    for previous in current.dropFirst().reversed() {
                        guard previous.headingPath == unit.headingPath, !previous.isHeading,
                            carriedTokens + previous.tokens <= overlapTokens,
                            carriedTokens + previous.tokens + unit.tokens <= maxTokens
                        else { break }
                        carried.insert(previous, at: 0)
                        carriedTokens += previous.tokens
                    }
                }
                current = carried
                currentTokens = carriedTokens
            }
            current.append(unit)
            currentTokens += unit.tokens
        }
        try emit()
        return result
    }

    /// Paragraphs (runs of non-blank lines) with their byte ranges, trailing whitespace excluded; in markdown every
    /// heading line is a block of its own and sets the heading path of what follows.
    func paragraphs(_ bytes: [UInt8], markdown: Bool) -> [(start: Int, end: Int, isHeading: Bool, headingPath: [String])] {
        var blocks: [(start: Int, end: Int, isHeading: Bool, headingPath: [String])] = []
        var headings: [(level: Int, title: String)] = []
        var blockStart: Int?
        var blockEnd = 0
        var inFence = false
        func close() {
            if let start = blockStart { blocks.append((start, blockEnd, false, headings.map(\.title))) }
            blockStart = nil
        }
        var lineStart = 0
        while lineStart < bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count && bytes[lineEnd] != 0x0A { lineEnd += 1 }
            var contentEnd = lineEnd
            while contentEnd > lineStart && Self.isSpace(bytes[contentEnd - 1]) { contentEnd -= 1 }
            var contentStart = lineStart
            while contentStart < contentEnd && Self.isSpace(bytes[contentStart]) { contentStart += 1 }
            if contentStart == contentEnd {
                if !inFence { close() }
            } else {
                let line = bytes[contentStart..<contentEnd]
                if markdown && line.starts(with: Array("```".utf8)) { inFence.toggle() }
                if markdown && !inFence, let level = Self.headingLevel(line) {
                    close()
                    let title = String(decoding: line.dropFirst(level), as: UTF8.self).trimmingCharacters(in: .whitespaces)
                    headings.removeAll { $0.level >= level }
                    headings.append((level, title))
                    blocks.append((contentStart, contentEnd, true, headings.map(\.title)))
                } else {
                    if blockStart == nil { blockStart = contentStart }
                    blockEnd = contentEnd
                }
            }
            lineStart = lineEnd + 1
        }
        close()
        return blocks
    }

    /// `#`…`######` followed by a space: a markdown heading's level.
    static func headingLevel(_ line: ArraySlice<UInt8>) -> Int? {
        var level = 0
        var i = line.startIndex
        while i < line.endIndex && line[i] == UInt8(ascii: "#") {
            level += 1
            i += 1
        }
        guard (1...6).contains(level), i < line.endIndex, line[i] == UInt8(ascii: " ") else { return nil }
        return level
    }

    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0C || b == 0x0B }

    /// `start..<end` cut in halves until every piece fits: at the newline nearest the middle, else whitespace, else
    /// the character boundary at the middle. Pieces are trimmed of the whitespace they were cut at.
    func split(_ bytes: [UInt8], _ start: Int, _ end: Int, tokens: Int, countTokens: (String) throws -> Int) throws -> [(Int, Int, Int)] {
        if tokens <= maxTokens || end - start <= 1 { return [(start, end, tokens)] }
        let middle = start + (end - start) / 2
        var cut: Int?
        for wanted in [{ (b: UInt8) in b == 0x0A }, { (b: UInt8) in b == 0x0A || Self.isSpace(b) }] {
            var distance = 0
            while cut == nil && distance < (end - start) / 2 {
                for candidate in [middle - distance, middle + distance] where candidate > start && candidate < end - 1 && wanted(bytes[candidate]) {
                    cut = candidate
                    break
                }
                distance += 1
            }
            if cut != nil { break }
        }
        var leftEnd: Int
        var rightStart: Int
        if let cut {
            leftEnd = cut
            rightStart = cut + 1
            while leftEnd > start && (bytes[leftEnd - 1] == 0x0A || Self.isSpace(bytes[leftEnd - 1])) { leftEnd -= 1 }
            while rightStart < end && (bytes[rightStart] == 0x0A || Self.isSpace(bytes[rightStart])) { rightStart += 1 }
        } else {
            var boundary = middle
            while boundary > start + 1 && bytes[boundary] & 0xC0 == 0x80 { boundary -= 1 }
            leftEnd = boundary
            rightStart = boundary
        }
        guard leftEnd > start, rightStart < end else { return [(start, end, tokens)] }
        func count(_ a: Int, _ b: Int) throws -> Int { try countTokens(String(decoding: bytes[a..<b], as: UTF8.self)) }
        return try split(bytes, start, leftEnd, tokens: count(start, leftEnd), countTokens: countTokens)
            + split(bytes, rightStart, end, tokens: count(rightStart, end), countTokens: countTokens)
    }
}
