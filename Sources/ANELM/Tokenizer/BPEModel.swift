import Foundation

/// Byte-pair encoding: merge adjacent symbols by rank until no known merge is left.
final class BPEModel: @unchecked Sendable {
    let vocab: [String: Int]
    private let merges: [UInt64: Merge]
    /// Ids of single-scalar tokens, the starting symbols of every word.
    private let scalarIds: [UInt32: Int]
    private let unknownId: Int?
    private let fuseUnknown: Bool
    /// Llama-3 style: a word that is itself in the vocabulary is taken whole.
    private let ignoreMerges: Bool

    private var cache: [String: [Int]] = [:]
    private let cacheLock = NSLock()
    private static let cacheCapacity = 50_000

    private struct Merge { let rank: Int32; let id: Int32 }

    init(vocab: [String: Int], merges: [(String, String)], unknownToken: String?, fuseUnknown: Bool, ignoreMerges: Bool) throws {
        self.vocab = vocab
        var table: [UInt64: Merge] = [:]
        table.reserveCapacity(merges.count)
        for (rank, (left, right)) in merges.enumerated() {
            guard let a = vocab[left], let b = vocab[right] else {
                throw ANELMError("BPE merge '\(left) \(right)' refers to a token that is not in the vocabulary")
            }
            guard let merged = vocab[left + right] else {
                throw ANELMError("BPE merge '\(left) \(right)' makes a token that is not in the vocabulary")
            }
            let key = Self.key(a, b)
            if table[key] == nil { table[key] = Merge(rank: Int32(clamping: rank), id: Int32(clamping: merged)) }
        }
        self.merges = table
        var scalars: [UInt32: Int] = [:]
        for (token, id) in vocab {
            let view = token.unicodeScalars
            if view.count == 1, let scalar = view.first { scalars[scalar.value] = id }
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
    }

    @inline(__always) private static func key(_ a: Int, _ b: Int) -> UInt64 {
        UInt64(UInt32(truncatingIfNeeded: a)) << 32 | UInt64(UInt32(truncatingIfNeeded: b))
    }

    /// Token ids for one pre-tokenized word.
    func tokenize(_ word: [Unicode.Scalar], into out: inout [Int]) {
        if word.isEmpty { return }
        let text = String(String.UnicodeScalarView(word))
        cacheLock.lock()
        let cached = cache[text]
        cacheLock.unlock()
        if let cached { out.append(contentsOf: cached); return }
        let ids = encodeWord(word, text: text)
        cacheLock.lock()
        if cache.count >= Self.cacheCapacity { cache.removeAll(keepingCapacity: true) }
        cache[text] = ids
        cacheLock.unlock()
        out.append(contentsOf: ids)
    }

    private func encodeWord(_ word: [Unicode.Scalar], text: String) -> [Int] {
        if ignoreMerges, let id = vocab[text] { return [id] }
        var ids: [Int] = []
        ids.reserveCapacity(word.count)
        var lastWasUnknown = false
        for scalar in word {
            if let id = scalarIds[scalar.value] {
                ids.append(id)
                lastWasUnknown = false
            } else if let unknownId {
                // Characters missing from the vocabulary become <unk>, or vanish when there is none (as in `tokenizers`).
                if !(fuseUnknown && lastWasUnknown) { ids.append(unknownId) }
                lastWasUnknown = true
            }
        }
        return ids.count < 2 ? ids : applyMerges(ids)
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
