/// BPE merges implied by a SentencePiece vocabulary, as transformers' `generate_merges` builds them for Gemma GGUFs.
enum SentencePieceMerges {
    /// Every split of every token into two vocabulary tokens, ranked by the token's position in the vocabulary,
    /// then by longer left part first (transformers sorts by (-position, len(left), len(right)), descending).
    ///
    /// A 262k vocabulary has about two million split points, so pieces are looked up by a rolling hash of their
    /// UTF-8 bytes (checked byte for byte) instead of building a String for each.
    static func fromVocabularyOrder(_ tokens: [String], vocab: Vocabulary) -> [BPEModel.IdMerge] {
        var bytes: [UInt8] = []
        var starts: [Int] = [0]
        starts.reserveCapacity(tokens.count + 1)
        for token in tokens {
            bytes.append(contentsOf: token.utf8)
            starts.append(bytes.count)
        }
        let maxLength = zip(starts.dropFirst(), starts).map { $0 - $1 }.max() ?? 0
        var powers = [UInt64](repeating: 1, count: maxLength + 1)
        for i in stride(from: 1, through: maxLength, by: 1) { powers[i] = powers[i - 1] &* multiplier }

        return bytes.withUnsafeBufferPointer { buffer -> [BPEModel.IdMerge] in
            func hash(_ range: Range<Int>) -> UInt64 {
                var h: UInt64 = 0
                for i in range { h = h &* multiplier &+ UInt64(buffer[i]) &+ 1 }
                return h
            }
            func equal(_ a: Range<Int>, _ b: Range<Int>) -> Bool {
                guard a.count == b.count else { return false }
                for k in 0..<a.count where buffer[a.lowerBound + k] != buffer[b.lowerBound + k] { return false }
                return true
            }
            // Hash → id of the token (the last one of equal tokens, as in `vocab`); colliding hashes fall back to `vocab`.
            var table: [UInt64: Int32] = [:]
            table.reserveCapacity(tokens.count)
            var collided = Set<UInt64>()
            for id in tokens.indices {
                let range = starts[id]..<starts[id + 1]
                let h = hash(range)
                if let other = table[h], !equal(starts[Int(other)]..<starts[Int(other) + 1], range) {
                    collided.insert(h)
                }
                table[h] = Int32(id)
            }
            func lookup(_ h: UInt64, _ range: Range<Int>) -> Int32? {
                if collided.contains(h) {
                    return vocab[String(decoding: UnsafeBufferPointer(rebasing: buffer[range]), as: UTF8.self)].map(Int32.init)
                }
                guard let id = table[h], equal(starts[Int(id)]..<starts[Int(id) + 1], range) else { return nil }
                return id
            }

            var merges: [BPEModel.IdMerge] = []
            var prefixHashes = [UInt64](repeating: 0, count: maxLength + 1)
            var rank: Int32 = 0
            for id in tokens.indices where vocab[tokens[id]] == id {
                let start = starts[id]
                let end = starts[id + 1]
                let length = end - start
                guard length > 1 else { continue }
                for k in 0..<length { prefixHashes[k + 1] = prefixHashes[k] &* multiplier &+ UInt64(buffer[start + k]) &+ 1 }
                let whole = prefixHashes[length]
                // Split points at scalar boundaries, from the end: longer left parts rank first.
                var cut = length - 1
                while cut > 0 {
                    defer { cut -= 1 }
                    if buffer[start + cut] & 0xC0 == 0x80 { continue }
                    let leftHash = prefixHashes[cut]
                    guard let left = lookup(leftHash, start..<(start + cut)) else { continue }
                    let rightHash = whole &- leftHash &* powers[length - cut]
                    guard let right = lookup(rightHash, (start + cut)..<end) else { continue }
                    merges.append(BPEModel.IdMerge(left: left, right: right, merged: Int32(id), rank: rank))
                    rank += 1
                }
            }
            return merges
        }
    }

    private static let multiplier: UInt64 = 0x100_0000_01B3

    /// A Gemma GGUF token as GemmaTokenizer spells it, for both `Tokenizer(gemmaGGUF:)` and the tokenizer.json
    /// `anelm convert` writes: tokens of only whitespace with a space in them (llama.cpp stores Gemma's user-defined
    /// "▁▁", "▁▁▁", … with real spaces) become that many "▁" (transformers' GGUF `gemma_tokenizer`:
    /// `"▁" * len(t) if " " in t and not t.strip()`); every other token is unchanged.
    static func gemmaSpelling(_ token: String) -> String {
        let scalars = token.unicodeScalars
        guard scalars.contains(" "), scalars.allSatisfy(isPythonWhitespace) else { return token }
        return String(repeating: "\u{2581}", count: scalars.count)
    }

    /// Python's `str.isspace()`, which decides which tokens transformers respells with "▁".
    static func isPythonWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
    }
}
