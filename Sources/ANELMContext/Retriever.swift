import ANELM
import Foundation
import GRDB

/// One chunk a search considered, with what each ranking said about it. Ranks are 1-based; nil where the chunk
/// was not among that ranking's candidates.
public struct Candidate: Sendable, Equatable {
    public var chunkID: Int64
    /// Cosine of the query and the chunk (vectors are unit length).
    public var denseScore: Float
    public var denseRank: Int?
    /// FTS5's BM25 negated, so higher is better (FTS5 reports lower-is-better); nil where the words did not match.
    public var bm25Score: Double?
    public var bm25Rank: Int?
    /// Reciprocal rank fusion of the two rankings.
    public var fusedScore: Double
    /// The final score: the relevance model's probability where one is trained, else `fusedScore`.
    public var score: Double
    public var tokenCount: Int
}

/// A search's answer: every candidate in final order (logged with a grounded answer), the query's vector, which
/// relevance model ranked them, and where the time went.
public struct SearchResult: Sendable {
    public var query: String
    public var queryVector: [Float]
    public var candidates: [Candidate]
    public var relevanceVersion: Int?
    public var timings: Timings

    public struct Timings: Sendable {
        public var embedSeconds = 0.0
        public var denseSeconds = 0.0
        public var bm25Seconds = 0.0
        public var rerankSeconds = 0.0
        public var totalSeconds = 0.0
    }
}

/// Reciprocal rank fusion (Cormack et al. 2009): Σ over the rankings that list the item of 1 / (k + rank).
public enum RankFusion {
    public static let k = 60.0

    public static func score(ranks: [Int?], k: Double = RankFusion.k) -> Double {
        ranks.reduce(0) { sum, rank in rank.map { sum + 1 / (k + Double($0)) } ?? sum }
    }
}

/// Hybrid retrieval over a store: dense cosine over every chunk vector (one matrix-vector product) and BM25 from
/// FTS5, fused by RRF, then re-ranked by the relevance model when one is trained.
public final class Retriever: @unchecked Sendable {
    public let store: ContextStore
    public let record: EmbedderRecord
    public let relevance: RelevanceSlot
    let pool: ThreadPool
    /// Candidates each ranking contributes before fusion.
    public var poolSize = 50

    private let lock = NSLock()
    private var cached: (generation: Int, index: VectorIndex)?

    public init(store: ContextStore, threads: Int? = nil) throws {
        guard let record = try store.embedderRecord() else {
            throw ANELMError("the store \(store.path) is empty; index files into it first (anelm index --store \(store.path) PATH…)")
        }
        self.store = store
        self.record = record
        relevance = RelevanceSlot(store: store)
        pool = ThreadPool(threads: threads ?? ThreadPool.physicalCoreCount)
    }

    /// The vector matrix, reloaded when the store's chunks changed since it was loaded.
    public func vectorIndex() throws -> VectorIndex {
        let generation = try store.generation()
        lock.lock()
        defer { lock.unlock() }
        if let cached, cached.generation == generation { return cached.index }
        let index = try VectorIndex(store: store, record: record)
        cached = (generation, index)
        return index
    }

    /// Ranks the store's chunks for `query` (whose unit vector is `queryVector`); `relevanceModel` re-ranks when given.
    public func search(query: String, queryVector: [Float], relevanceModel: RelevanceModel?) throws -> SearchResult {
        let started = DispatchTime.now().uptimeNanoseconds
        func since(_ t: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9 }
        var timings = SearchResult.Timings()
        let index = try vectorIndex()
        var t = DispatchTime.now().uptimeNanoseconds
        let dense = try index.nearest(queryVector, k: poolSize, pool: pool)
        timings.denseSeconds = since(t)
        t = DispatchTime.now().uptimeNanoseconds
        let lexical = try bm25(query, limit: poolSize, chunks: index.count)
        timings.bm25Seconds = since(t)

        var byChunk: [Int64: Candidate] = [:]
        for (rank, hit) in dense.enumerated() {
            let id = index.chunkIDs[hit.row]
            byChunk[id] = Candidate(chunkID: id, denseScore: hit.score, denseRank: rank + 1, bm25Score: nil, bm25Rank: nil, fusedScore: 0, score: 0, tokenCount: 0)
        }
        for (rank, hit) in lexical.enumerated() {
            if byChunk[hit.chunkID] == nil {
                // Found by its words only: its cosine still counts as a feature.
                let row = index.rowOfChunk[hit.chunkID]
                let cosine = row.map { zip(index.vector(at: $0), queryVector).reduce(Float(0)) { $0 + $1.0 * $1.1 } } ?? 0
                byChunk[hit.chunkID] = Candidate(
                    chunkID: hit.chunkID, denseScore: cosine, denseRank: nil, bm25Score: nil, bm25Rank: nil, fusedScore: 0, score: 0, tokenCount: 0)
            }
            byChunk[hit.chunkID]?.bm25Score = hit.score
            byChunk[hit.chunkID]?.bm25Rank = rank + 1
        }
        let lengths = try tokenCounts(Array(byChunk.keys))
        var candidates = byChunk.values.map { c -> Candidate in
            var c = c
            c.fusedScore = RankFusion.score(ranks: [c.denseRank, c.bm25Rank])
            c.score = c.fusedScore
            c.tokenCount = lengths[c.chunkID] ?? 0
            return c
        }
        candidates.sort { ($0.score, $1.chunkID) > ($1.score, $0.chunkID) }
        if let relevanceModel {
            t = DispatchTime.now().uptimeNanoseconds
            candidates = relevanceModel.rerank(candidates, queryVector: queryVector, index: index)
            timings.rerankSeconds = since(t)
        }
        timings.totalSeconds = since(started)
        return SearchResult(query: query, queryVector: queryVector, candidates: candidates, relevanceVersion: relevanceModel?.version, timings: timings)
    }

    /// FTS5's best matches for the query's words (any of them), best first, as (chunk, −bm25); FTS5's `rank` is bm25().
    /// In a store of 1000 chunks or more, words found in more than 5% of them are left out (unless all are): their
    /// inverse document frequency is near zero, so they barely move the ranking, yet FTS5 would score every chunk
    /// that has them (a "the" makes that every chunk).
    public func bm25(_ query: String, limit: Int, chunks: Int) throws -> [(chunkID: Int64, score: Double)] {
        var words = Array(Self.words(query).prefix(32))
        guard !words.isEmpty else { return [] }
        return try store.read { db in
            if chunks >= 1000 {
                let marks = Array(repeating: "?", count: words.count).joined(separator: ",")
                var frequency: [String: Int] = [:]
                for row in try Row.fetchAll(
                    db, sql: "SELECT term, doc FROM chunks_fts_vocabulary WHERE term IN (\(marks))", arguments: StatementArguments(words))
                {
                    frequency[try row.decode(String.self, atIndex: 0)] = try row.decode(Int.self, atIndex: 1)
                }
                let common = Set(words.filter { (frequency[$0] ?? 0) * 20 > chunks })
                let rest = words.filter { !common.contains($0) }
                // Words the vocabulary does not list as typed (FTS5 folds diacritics) are kept.
                words = rest.isEmpty ? [words.min { (frequency[$0] ?? 0) < (frequency[$1] ?? 0) } ?? words[0]] : rest
            }
            // Each word quoted: FTS5 syntax in the question (AND, NEAR, "*", ":") is text, not an operator.
            let match = words.map { "\"\($0)\"" }.joined(separator: " OR ")
            return try Row.fetchAll(
                db, sql: "SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?", arguments: [match, limit]
            ).map { (try $0.decode(Int64.self, atIndex: 0), -(try $0.decode(Double.self, atIndex: 1))) }
        }
    }

    private func tokenCounts(_ ids: [Int64]) throws -> [Int64: Int] {
        guard !ids.isEmpty else { return [:] }
        return try store.read { db in
            let marks = Array(repeating: "?", count: ids.count).joined(separator: ",")
            var out: [Int64: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT id, token_count FROM chunks WHERE id IN (\(marks))", arguments: StatementArguments(ids)) {
                out[try row.decode(Int64.self, atIndex: 0)] = try row.decode(Int.self, atIndex: 1)
            }
            return out
        }
    }

    /// Lowercased runs of letters and digits, each once, in order: what FTS5's unicode61 tokenizer matches.
    static func words(_ text: String) -> [String] {
        var seen = Set<String>()
        return tokens(text).filter { seen.insert($0).inserted }
    }

    /// Lowercased runs of letters and digits, in order.
    public static func tokens(_ text: String) -> [String] {
        var out: [String] = []
        var current = ""
        for scalar in text.lowercased().unicodeScalars {
            if CharacterSet.alphanumerics.contains(scalar) {
                current.unicodeScalars.append(scalar)
            } else if !current.isEmpty {
                out.append(current)
                current = ""
            }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }
}
