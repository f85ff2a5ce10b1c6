import Foundation

/// Tokens as byte strings in a trie, laid out in depth-first order so a mask is one forward pass that skips whole
/// subtrees the grammar rules out.
struct TokenTrie {
    /// Per trie node (0 is the root): its byte, its depth, the index after its subtree.
    let nodeByte: [UInt8]
    let nodeDepth: [UInt16]
    let subtreeEnd: [Int32]
    /// Tokens ending at node i are `tokens[tokenStart[i]..<tokenStart[i + 1]]`.
    let tokenStart: [Int32]
    let tokens: [Int32]
    /// The longest token's length in bytes.
    let maxDepth: Int
    /// The words of a vocabulary mask that hold these tokens, ascending.
    let words: [Int32]

    /// The trie of the tokens `ids` (nonempty byte strings).
    init(_ ids: [Int], tokenBytes: [[UInt8]]) {
        let order = ids.sorted { tokenBytes[$0].lexicographicallyPrecedes(tokenBytes[$1]) }
        var nodeByte: [UInt8] = [0]
        var nodeDepth: [UInt16] = [0]
        var subtreeEnd: [Int32] = [0]
        var tokenStart: [Int32] = [0]
        var tokens: [Int32] = []
        var path: [Int] = [0]  // node indices from the root to the current node
        var previous: [UInt8] = []
        for id in order {
            let word = tokenBytes[id]
            var common = 0
            while common < word.count, common < previous.count, word[common] == previous[common] { common += 1 }
            while path.count > common + 1 { subtreeEnd[path.removeLast()] = Int32(nodeByte.count) }
            for depth in common..<word.count {
                path.append(nodeByte.count)
                nodeByte.append(word[depth])
                nodeDepth.append(UInt16(min(depth + 1, Int(UInt16.max))))
                subtreeEnd.append(0)
                tokenStart.append(Int32(tokens.count))
            }
            tokens.append(Int32(id))
            previous = word
        }
        while let last = path.popLast() { subtreeEnd[last] = Int32(nodeByte.count) }
        tokenStart.append(Int32(tokens.count))
        self.nodeByte = nodeByte
        self.nodeDepth = nodeDepth
        self.subtreeEnd = subtreeEnd
        self.tokenStart = tokenStart
        self.tokens = tokens
        maxDepth = Int(nodeDepth.max() ?? 0)
        words = Array(Set(ids.map { Int32($0 >> 6) })).sorted()
    }

    /// Sets the bits of the tokens allowed from `state`: one walk over the trie, pruning subtrees no stack accepts.
    /// Each node's parse state is its parent's after the node's byte, a lookup in the matcher's memoized transitions.
    func walk(from state: Int32, matcher: GrammarMatcher, into mask: inout [UInt64]) {
        var levelState = [Int32](repeating: 0, count: maxDepth + 1)
        levelState[0] = state
        var node = 1
        let nodeCount = nodeByte.count
        while node < nodeCount {
            let depth = Int(nodeDepth[node])
            let next = matcher.step(levelState[depth - 1], byte: nodeByte[node])
            if next < 0 {
                node = Int(subtreeEnd[node])
                continue
            }
            levelState[depth] = next
            for t in Int(tokenStart[node])..<Int(tokenStart[node + 1]) {
                let id = Int(tokens[t])
                mask[id >> 6] |= 1 << UInt64(id & 63)
            }
            node += 1
        }
    }
}

/// The allowed tokens of one trie, as the nonzero words of a vocabulary mask.
struct PartialMask {
    var words: [Int32] = []
    var bits: [UInt64] = []
}

/// A tokenizer's tokens, in tries by length (`for(_:)` caches it per tokenizer).
///
/// Why by length: a token of fewer than U bytes cannot tell a bounded repetition with U blocks left from one with
/// more, so the mask of the trie of tokens up to U - 1 bytes is shared by all those stacks (`GrammarMatcher.canonical`).
/// Most tokens are short and their masks are shared; only the few long tokens are walked again at every position
/// inside `"…"{0,40}`.
public final class GrammarVocabulary: @unchecked Sendable {
    public let vocabularySize: Int
    /// Tries of tokens of 1–4, 5–8, 9–16, … bytes (empty ones left out).
    let tries: [TokenTrie]
    /// Each token's bytes (empty for special tokens and ids without text: never allowed).
    let tokenBytes: [[UInt8]]
    /// Tokens whose text differs when they come first (a decoder that strips a leading space), with those bytes.
    let firstTokenBytes: [Int: [UInt8]]

    public convenience init(tokenizer: Tokenizer) {
        var bytes: [[UInt8]] = []
        var first: [Int: [UInt8]] = [:]
        bytes.reserveCapacity(tokenizer.vocabSize)
        for id in 0..<tokenizer.vocabSize {
            if tokenizer.isSpecialToken(id) || tokenizer.tokenString(id) == nil {
                bytes.append([])
                continue
            }
            let later = tokenizer.bytes(of: [id], skipSpecialTokens: false, isFirst: false, exactByteRuns: false)
            let atStart = tokenizer.bytes(of: [id], skipSpecialTokens: false, isFirst: true, exactByteRuns: false)
            bytes.append(later)
            if atStart != later { first[id] = atStart }
        }
        self.init(tokenBytes: bytes, firstTokenBytes: first)
    }

    /// A vocabulary of the given byte strings (token id = index; an empty string is never allowed).
    public init(tokenBytes: [[UInt8]], firstTokenBytes: [Int: [UInt8]] = [:]) {
        vocabularySize = tokenBytes.count
        self.tokenBytes = tokenBytes
        self.firstTokenBytes = firstTokenBytes
        var classes: [[Int]] = []
        for id in tokenBytes.indices where !tokenBytes[id].isEmpty {
            // 1–4 bytes: class 0, 5–8: 1, 9–16: 2, …
            let length = tokenBytes[id].count
            let lengthClass = length <= 4 ? 0 : (Int.bitWidth - (length - 1).leadingZeroBitCount) - 2
            while classes.count <= lengthClass { classes.append([]) }
            classes[lengthClass].append(id)
        }
        tries = classes.filter { !$0.isEmpty }.map { TokenTrie($0, tokenBytes: tokenBytes) }
    }

    private static let cacheLock = NSLock()
    nonisolated(unsafe) private static var cache: [ObjectIdentifier: (tokenizer: Weak<Tokenizer>, vocabulary: GrammarVocabulary)] = [:]

    /// The vocabulary of `tokenizer`, built on first use and kept while the tokenizer lives.
    public static func `for`(_ tokenizer: Tokenizer) -> GrammarVocabulary {
        cacheLock.lock()
        defer { cacheLock.unlock() }
        cache = cache.filter { $0.value.tokenizer.value != nil }
        if let hit = cache[ObjectIdentifier(tokenizer)], hit.tokenizer.value === tokenizer { return hit.vocabulary }
        let vocabulary = GrammarVocabulary(tokenizer: tokenizer)
        cache[ObjectIdentifier(tokenizer)] = (Weak(tokenizer), vocabulary)
        return vocabulary
    }

    /// The tokens of `tries[trie]` allowed from `stacks`. `scratch` is a vocabulary-sized mask of zeros, left so.
    func partialMask(trie: Int, from stacks: [Int32], matcher: GrammarMatcher, scratch: inout [UInt64]) -> PartialMask {
        matcher.trimStateTable()
        let tokens = tries[trie]
        tokens.walk(from: matcher.state(of: stacks), matcher: matcher, into: &scratch)
        var out = PartialMask()
        for w in tokens.words where scratch[Int(w)] != 0 {
            out.words.append(w)
            out.bits.append(scratch[Int(w)])
            scratch[Int(w)] = 0
        }
        return out
    }

    /// The same mask, one token at a time: the reference the trie walk is tested against.
    func referenceMask(from stacks: [Int32], matcher: GrammarMatcher) -> [UInt64] {
        var mask = [UInt64](repeating: 0, count: (vocabularySize + 63) / 64)
        for id in 0..<vocabularySize where !tokenBytes[id].isEmpty && matcher.accepts(stacks, bytes: tokenBytes[id]) {
            mask[id >> 6] |= 1 << UInt64(id & 63)
        }
        return mask
    }
}

private struct Weak<T: AnyObject> {
    weak var value: T?
    init(_ value: T) { self.value = value }
}

/// Constrains one generation to a grammar: masks the tokens that cannot continue a match, follows the
/// tokens chosen, and says when the output is complete.
///
/// Special tokens are never allowed; end-of-sequence tokens only once the grammar is complete. Masks are
/// cached per parse stack and trie of tokens (a state's mask is the union of its stacks'), so repeated states cost a
/// lookup. The stack is the key after `GrammarMatcher.canonical` with the trie's longest token + 1 as the limit: the
/// positions of a bounded repetition far from its bound share one mask.
public final class GrammarConstraint {
    public let grammar: Grammar
    let vocabulary: GrammarVocabulary
    let matcher: GrammarMatcher
    private let endOfSequenceIds: [Int]
    private(set) var stacks: [Int32]
    /// Per trie: the mask per canonical stack.
    private var maskCache: [[Int32: PartialMask]]
    private var scratch: [UInt64]
    private var tokensAccepted = 0

    public init(grammar: Grammar, vocabulary: GrammarVocabulary, endOfSequenceIds: Set<Int>) {
        self.grammar = grammar
        self.vocabulary = vocabulary
        matcher = GrammarMatcher(grammar)
        stacks = matcher.initialStacks
        maskCache = Array(repeating: [:], count: vocabulary.tries.count)
        scratch = [UInt64](repeating: 0, count: (vocabulary.vocabularySize + 63) / 64)
        self.endOfSequenceIds = endOfSequenceIds.filter { $0 >= 0 && $0 < vocabulary.vocabularySize }.sorted()
    }

    /// The output so far is a complete match.
    public var isComplete: Bool { stacks.contains(GrammarMatcher.complete) }
    /// More bytes could still be matched.
    public var canContinue: Bool { stacks.contains { $0 != GrammarMatcher.complete } }

    /// The allowed tokens as a bit mask over the vocabulary (bit `id % 64` of word `id / 64`).
    public func allowedTokens() -> [UInt64] {
        var mask = [UInt64](repeating: 0, count: (vocabulary.vocabularySize + 63) / 64)
        for id in stacks where id != GrammarMatcher.complete {
            for trie in vocabulary.tries.indices {
                let key = matcher.canonical(id, limit: Int32(vocabulary.tries[trie].maxDepth + 1))
                let own: PartialMask
                if let cached = maskCache[trie][key] {
                    own = cached
                } else {
                    own = vocabulary.partialMask(trie: trie, from: [key], matcher: matcher, scratch: &scratch)
                    maskCache[trie][key] = own
                }
                for i in own.words.indices { mask[Int(own.words[i])] |= own.bits[i] }
            }
        }
        return finished(mask)
    }

    /// What both mask paths finish with: at the start, tokens whose text differs when they come first (a decoder
    /// that strips a leading space) are checked with those bytes; end-of-sequence is allowed once the grammar is complete.
    private func finished(_ mask: [UInt64]) -> [UInt64] {
        var mask = mask
        if tokensAccepted == 0 {
            for (id, bytes) in vocabulary.firstTokenBytes {
                let allowed = !bytes.isEmpty && matcher.accepts(stacks, bytes: bytes)
                if allowed { mask[id >> 6] |= 1 << UInt64(id & 63) } else { mask[id >> 6] &= ~(1 << UInt64(id & 63)) }
            }
        }
        if isComplete { for id in endOfSequenceIds { mask[id >> 6] |= 1 << UInt64(id & 63) } }
        return mask
    }

    /// Sets every token the grammar does not allow to -infinity; throws when none is allowed.
    public func apply(to logits: inout [Float]) throws {
        let mask = allowedTokens()
        var any = false
        logits.withUnsafeMutableBufferPointer { values in
            for w in 0..<min(mask.count, (values.count + 63) / 64) {
                let bits = mask[w]
                let base = w << 6
                let end = min(base + 64, values.count)
                if bits == 0 {
                    for id in base..<end { values[id] = -.infinity }
                    continue
                }
                any = true
                // Only the disallowed ids, lowest bit first.
                var disallowed = ~bits
                while disallowed != 0 {
                    let id = base + disallowed.trailingZeroBitCount
                    if id >= end { break }
                    values[id] = -.infinity
                    disallowed &= disallowed - 1
                }
            }
            // Logits past the tokenizer's vocabulary (padded output layers) are never text.
            if values.count > mask.count * 64 { for id in (mask.count * 64)..<values.count { values[id] = -.infinity } }
        }
        guard any else { throw ANELMError("the grammar allows no token of this vocabulary here (output so far does not continue)") }
    }

    /// The same mask as `allowedTokens()`, checking every token on its own: slow, the reference the trie
    /// walk is tested against.
    public func allowedTokensOneByOne() -> [UInt64] {
        let mask = vocabulary.referenceMask(from: stacks, matcher: matcher)
        return finished(mask)
    }

    /// Follows a chosen token; throws when the grammar does not allow it.
    public func accept(_ token: Int) throws {
        if endOfSequenceIds.contains(token) {
            guard isComplete else { throw ANELMError("end of sequence before the grammar is complete") }
            stacks = [GrammarMatcher.complete]
            return
        }
        guard token >= 0, token < vocabulary.vocabularySize else { throw ANELMError("token \(token) is outside the vocabulary") }
        let bytes = tokensAccepted == 0 ? vocabulary.firstTokenBytes[token] ?? vocabulary.tokenBytes[token] : vocabulary.tokenBytes[token]
        guard !bytes.isEmpty else { throw ANELMError("token \(token) is not allowed by the grammar") }
        let next = matcher.advance(stacks, bytes: bytes)
        guard !next.isEmpty else { throw ANELMError("token \(token) is not allowed by the grammar") }
        stacks = next
        tokensAccepted += 1
    }
}
