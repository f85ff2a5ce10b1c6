import Foundation

/// Byte-pair encoding: merge adjacent symbols by rank until no known merge is left.
final class BPEModel: @unchecked Sendable {
    let vocab: Vocabulary
    private let merges: [UInt64: Merge]
    /// Ids of single-scalar tokens, the starting symbols of every word.
    private let scalarIds: [UInt32: Int]
    private let unknownId: Int?
    private let fuseUnknown: Bool
    /// Llama-3 style: a word that is itself in the vocabulary is taken whole.
    private let ignoreMerges: Bool
    /// SentencePiece style: ids of `<0x00>`…`<0xFF>` (nil where missing) for characters not in the vocabulary.
    private let byteFallbackIds: [Int?]?

    private var cache: [ExactString: [Int]] = [:]
    private let cacheLock = NSLock()
    private static let cacheCapacity = 50_000
    /// Longer words are not cached (SentencePiece-style words can be whole paragraphs).
    private static let cachedWordLimit = 256

    private struct Merge {
        let rank: Int32
        let id: Int32
    }

    /// A merge by ids: `left` and `right` make `merged`; lower ranks merge first.
    struct IdMerge { let left: Int32, right: Int32, merged: Int32, rank: Int32 }

    convenience init(
        vocab: Vocabulary, merges: [(String, String)], unknownToken: String?, fuseUnknown: Bool,
        ignoreMerges: Bool, byteFallback: Bool = false
    ) throws {
        var idMerges: [IdMerge] = []
        idMerges.reserveCapacity(merges.count)
        for (rank, (left, right)) in merges.enumerated() {
            guard let a = vocab[left], let b = vocab[right] else {
                throw ANELMError("BPE merge '\(left) \(right)' refers to a token that is not in the vocabulary")
            }
            guard let merged = vocab[left + right] else {
                throw ANELMError("BPE merge '\(left) \(right)' makes a token that is not in the vocabulary")
            }
            idMerges.append(
                IdMerge(
                    left: Int32(clamping: a), right: Int32(clamping: b), merged: Int32(clamping: merged),
                    rank: Int32(clamping: rank)))
        }
        try self.init(
            vocab: vocab, idMerges: idMerges, unknownToken: unknownToken, fuseUnknown: fuseUnknown,
            ignoreMerges: ignoreMerges, byteFallback: byteFallback)
    }

    init(
        vocab: Vocabulary, idMerges: [IdMerge], unknownToken: String?, fuseUnknown: Bool, ignoreMerges: Bool,
        byteFallback: Bool
    ) throws {
        self.vocab = vocab
        var table: [UInt64: Merge] = [:]
        table.reserveCapacity(idMerges.count)
        for merge in idMerges {
            // `tokenizers` keeps the last of duplicate pairs.
            table[Self.key(Int(merge.left), Int(merge.right))] = Merge(rank: merge.rank, id: merge.merged)
        }
        self.merges = table
        var scalars: [UInt32: Int] = [:]
        for (token, id) in vocab {
            let view = token.unicodeScalars
            var iterator = view.makeIterator()
            if let scalar = iterator.next(), iterator.next() == nil { scalars[scalar.value] = id }
        }
        self.scalarIds = scalars
        if let unknownToken {
            guard let id = vocab[unknownToken] else {
                throw ANELMError("BPE unk_token '\(unknownToken)' is not in the vocabulary")
            }
            self.unknownId = id
        } else {
            self.unknownId = nil
        }
        self.fuseUnknown = fuseUnknown
        self.ignoreMerges = ignoreMerges
        byteFallbackIds = byteFallback ? (0..<256).map { vocab[Self.byteTokenName(UInt8($0))] } : nil
    }

    /// `<0x0A>`: the token SentencePiece uses for one raw byte.
    static func byteTokenName(_ byte: UInt8) -> String {
        let hex = String(byte, radix: 16, uppercase: true)
        return "<0x" + (hex.count == 1 ? "0" + hex : hex) + ">"
    }

    /// The byte a `<0xHH>` token stands for, or nil for any other token.
    static func byteOfToken(_ token: String) -> UInt8? {
        let utf8 = token.utf8
        guard utf8.count == 6 else { return nil }
        let b = Array(utf8)
        guard b[0] == 0x3C, b[1] == 0x30, b[2] == 0x78, b[5] == 0x3E else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        guard let high = nibble(b[3]), let low = nibble(b[4]) else { return nil }
        return high << 4 | low
    }

    @inline(__always) private static func key(_ a: Int, _ b: Int) -> UInt64 {
        UInt64(UInt32(truncatingIfNeeded: a)) << 32 | UInt64(UInt32(truncatingIfNeeded: b))
    }

    /// Token ids for one pre-tokenized word.
    func tokenize(_ word: [Unicode.Scalar], into out: inout [Int]) {
        if word.isEmpty { return }
        let text = String(String.UnicodeScalarView(word))
        let cacheable = word.count <= Self.cachedWordLimit
        if cacheable {
            cacheLock.lock()
            let cached = cache[ExactString(text)]
            cacheLock.unlock()
            if let cached {
                out.append(contentsOf: cached)
                return
            }
        }
        let ids = encodeWord(word, text: text)
        if cacheable {
            cacheLock.lock()
            if cache.count >= Self.cacheCapacity { cache.removeAll(keepingCapacity: true) }
            cache[ExactString(text)] = ids
            cacheLock.unlock()
        }
        out.append(contentsOf: ids)
    }

    /// Initial symbols as `tokenizers`' BPE makes them: a vocabulary character, else its byte tokens, else `<unk>`.
    private func encodeWord(_ word: [Unicode.Scalar], text: String) -> [Int] {
        if ignoreMerges, let id = vocab[text] { return [id] }
        var ids: [Int] = []
        ids.reserveCapacity(word.count)
        // An unknown character waits here, so runs of them fuse; byte tokens pass it (as in `tokenizers`).
        var pendingUnknown = false
        for scalar in word {
            if let id = scalarIds[scalar.value] {
                if pendingUnknown, let unknownId { ids.append(unknownId) }
                pendingUnknown = false
                ids.append(id)
                continue
            }
            if let byteFallbackIds, let byteIds = Self.byteIds(of: scalar, in: byteFallbackIds) {
                ids.append(contentsOf: byteIds)
                continue
            }
            // Characters missing from the vocabulary become <unk>, or vanish when there is none.
            guard let unknownId else { continue }
            if pendingUnknown && !fuseUnknown { ids.append(unknownId) }
            pendingUnknown = true
        }
        if pendingUnknown, let unknownId { ids.append(unknownId) }
        return ids.count < 2 ? ids : applyMerges(ids)
    }

    private static func byteIds(of scalar: Unicode.Scalar, in table: [Int?]) -> [Int]? {
        var ids: [Int] = []
        var complete = true
        UTF8.encode(scalar) { byte in
            if let id = table[Int(byte)] { ids.append(id) } else { complete = false }
        }
        return complete ? ids : nil
    }

    /// Merges the lowest-ranked adjacent pair first (leftmost on ties), with a heap so long words stay fast.
    private func applyMerges(_ start: [Int]) -> [Int] {
        var ids = start
        let n = ids.count
        var next = Array(1...n)
        next[n - 1] = -1
        var prev = Array(-1..<(n - 1))
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap()
        for i in 0..<(n - 1) {
            if let merge = merges[Self.key(ids[i], ids[i + 1])] { heap.push(rank: merge.rank, position: i) }
        }
        while let (rank, pos) = heap.pop() {
            guard alive[pos], next[pos] >= 0 else { continue }
            let right = next[pos]
            guard let merge = merges[Self.key(ids[pos], ids[right])], merge.rank == rank else { continue }
            ids[pos] = Int(merge.id)
            alive[right] = false
            next[pos] = next[right]
            if next[right] >= 0 { prev[next[right]] = pos }
            if prev[pos] >= 0, let m = merges[Self.key(ids[prev[pos]], ids[pos])] {
                heap.push(rank: m.rank, position: prev[pos])
            }
            if next[pos] >= 0, let m = merges[Self.key(ids[pos], ids[next[pos]])] {
                heap.push(rank: m.rank, position: pos)
            }
        }
        var result: [Int] = []
        var i = 0
        while i >= 0 {
            result.append(ids[i])
            i = next[i]
        }
        return result
    }
}

/// Binary min-heap of (rank, position), ordered by rank then position.
private struct MinHeap {
    private var items: [UInt64] = []

    mutating func push(rank: Int32, position: Int) {
        items.append(UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(truncatingIfNeeded: position)))
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if items[parent] <= items[child] { break }
            items.swapAt(parent, child)
            child = parent
        }
    }

    mutating func pop() -> (Int32, Int)? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                if left >= items.count { break }
                var smallest = left
                if left + 1 < items.count && items[left + 1] < items[left] { smallest = left + 1 }
                if items[parent] <= items[smallest] { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return (Int32(bitPattern: UInt32(top >> 32)), Int(UInt32(truncatingIfNeeded: top)))
    }
}
