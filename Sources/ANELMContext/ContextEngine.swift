import ANELM
import Foundation

/// A question's prompt grounded in retrieved chunks: the chat messages, the sources in citation order ([1] first)
/// and the search they came from (logged with the answer).
public struct GroundedPrompt: Sendable {
    public var question: String
    public var messages: [ChatMessage]
    public var sources: [StoredChunk]
    public var search: SearchResult

    public init(question: String, messages: [ChatMessage], sources: [StoredChunk], search: SearchResult) {
        (self.question, self.messages, self.sources, self.search) = (question, messages, sources, search)
    }
}

/// A logged grounded answer: its id in the log, the prompt's chunks and those the analyzer found used.
public struct GroundedAnswer: Sendable, Equatable {
    public var answerID: Int64
    public var sources: [Int64]
    public var used: [Int64]
    public var relevanceVersion: Int?
}

/// The context engine over one store: search, grounded prompts within a context budget, and the log of answers
/// (with the analyzer's marks) that the relevance model learns from. Used by `anelm search`/`ask` and the server;
/// safe to share between requests (the embedder is called under a lock).
public final class ContextEngine: @unchecked Sendable {
    public let store: ContextStore
    public let retriever: Retriever
    public var analyzer = UsageAnalyzer()
    let embedder: any TextEmbedder
    private let embedLock = NSLock()

    /// `embedder` must be the one that built the store.
    public init(store: ContextStore, embedder: any TextEmbedder, threads: Int? = nil) throws {
        retriever = try Retriever(store: store, threads: threads)
        let record = retriever.record
        guard record.identifier == embedder.identifier, record.dimensions == embedder.dimensions else {
            throw ANELMError(
                "the store \(store.path) was built with the embedder \(quotedName(record.identifier)) (\(record.dimensions) dimensions), not \(quotedName(embedder.identifier))"
            )
        }
        self.store = store
        self.embedder = embedder
    }

    /// Opens the store at `path` with the embedder that built it (`load` opens it from the recorded path).
    public static func open(storePath path: String, threads: Int? = nil, loadEmbedder: (EmbedderRecord) throws -> any TextEmbedder) throws -> ContextEngine {
        let store = try ContextStore(path: path, create: false)
        guard let record = try store.embedderRecord() else {
            throw ANELMError("the store \(path) is empty; index files into it first (anelm index --store \(path) PATH…)")
        }
        return try ContextEngine(store: store, embedder: try loadEmbedder(record), threads: threads)
    }

    /// Unit vectors of `texts` under the store's embedder.
    public func embed(_ texts: [String]) throws -> [[Float]] {
        embedLock.lock()
        defer { embedLock.unlock() }
        return try Indexer.embed(texts, with: embedder)
    }

    /// Indexes files and folders into the store with its embedder, as `anelm index` does (the same `Indexer`, chunks of
    /// at most 200 tokens or the embedder's sequence length): the server's uploads.
    public func index(_ paths: [String], progress: (IndexProgress) -> Void = { _ in }) throws -> IndexReport {
        embedLock.lock()
        defer { embedLock.unlock() }
        let chunker = try Chunker(maxTokens: min(200, embedder.maxSequenceLength))
        let indexer = try Indexer(store: store, embedder: embedder, embedderPath: retriever.record.path, chunker: chunker)
        return try indexer.index(paths, progress: progress)
    }

    /// Every candidate for `query`, best first; re-ranked by the relevance model in use unless `rerank` is false.
    public func search(_ query: String, rerank: Bool = true) throws -> SearchResult {
        guard !query.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw ANELMError("the query is empty") }
        let started = DispatchTime.now().uptimeNanoseconds
        let vector = try embed([query])[0]
        let embedSeconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        var result = try retriever.search(query: query, queryVector: vector, relevanceModel: rerank ? try retriever.relevance.current() : nil)
        result.timings.embedSeconds = embedSeconds
        result.timings.totalSeconds += embedSeconds
        return result
    }

    /// The first `topK` candidates with their chunks.
    public func hits(_ result: SearchResult, topK: Int) throws -> [(candidate: Candidate, chunk: StoredChunk)] {
        let top = Array(result.candidates.prefix(max(0, topK)))
        let chunks = Dictionary(try store.chunks(top.map(\.chunkID)).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        return top.compactMap { c in chunks[c.chunkID].map { (c, $0) } }
    }

    public static let groundingInstructions =
        "Answer the question using only the numbered sources below. Cite each source you use by its number in square brackets, like [1]. If the sources do not contain the answer, say that you do not know."

    /// The prompt for `question`: the best `topK` chunks that fit, numbered, so that the chat prompt (counted by
    /// `countTokens`, the model's template and tokenizer) stays within `budget` tokens. A chunk that would overflow
    /// is left out and the next one tried.
    ///
    /// `exploration` of the `topK` places go to chunks drawn (seeded by the question) instead: half from the
    /// candidates ranked up to `2·topK`, half from all of them. The log only learns about chunks that were shown: without some exploration, what the
    /// ranking never shows is never marked ignored, and the relevance model can learn a bias it never sees
    /// corrected (the simulation test shows one).
    public func groundedPrompt(
        question: String, topK: Int, budget: Int, exploration: Int = 0, countTokens: ([ChatMessage]) throws -> Int
    ) throws -> GroundedPrompt {
        guard topK > 0 else { throw ANELMError("top_k must be at least 1; it is \(topK)") }
        guard exploration >= 0, exploration < topK || exploration == 0 else {
            throw ANELMError("exploration (\(exploration)) must be ≥ 0 and less than top_k (\(topK))")
        }
        let search = try self.search(question)
        var sources: [StoredChunk] = []
        var messages = Self.messages(question: question, sources: [])
        guard try countTokens(messages) <= budget else {
            throw ANELMError("the question alone takes more than the \(budget) tokens the context leaves for the prompt")
        }
        var chosen = try hits(search, topK: topK - exploration).map(\.chunk)
        if exploration > 0 {
            // Half from just below the cut (near misses), half from anywhere in the candidates: a log that never
            // shows a far-down chunk cannot learn that retrieval's order matters at all.
            var rng = SeededGenerator(seed: question.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 })
            let everything = try hits(search, topK: search.candidates.count).map(\.chunk)
            for (pool, count) in [(everything.prefix(2 * topK), (exploration + 1) / 2), (everything[...], exploration / 2)] {
                var rest = pool.filter { c in !chosen.contains { $0.id == c.id } }
                rng.shuffle(&rest)
                chosen += rest.prefix(count)
            }
        }
        for chunk in chosen {
            let tried = Self.messages(question: question, sources: sources + [chunk])
            if try countTokens(tried) <= budget {
                sources.append(chunk)
                messages = tried
            }
        }
        return GroundedPrompt(question: question, messages: messages, sources: sources, search: search)
    }

    static func messages(question: String, sources: [StoredChunk]) -> [ChatMessage] {
        var user = ""
        if !sources.isEmpty {
            user += "Sources:\n\n"
            for (i, chunk) in sources.enumerated() {
                let name = URL(fileURLWithPath: chunk.source).lastPathComponent
                user += "[\(i + 1)] \(name)\(chunk.headingPath.isEmpty ? "" : " › " + chunk.headingPath)\n\(chunk.text)\n\n"
            }
        }
        user += "Question: \(question)"
        return [ChatMessage(role: "system", content: groundingInstructions), ChatMessage(role: "user", content: user)]
    }

    /// Marks which sources `response` used and logs the answer; returns its log entry.
    @discardableResult
    public func record(_ prompt: GroundedPrompt, response: String, model: String) throws -> GroundedAnswer {
        let index = try retriever.vectorIndex()
        let numbered = prompt.sources.enumerated().map { i, chunk in
            (number: i + 1, text: chunk.text, vector: index.rowOfChunk[chunk.id].map { index.vector(at: $0) } ?? [])
        }
        let reasons = try analyzer.analyze(answer: response, question: prompt.question, sources: numbered, embed: { try self.embed($0) })
        let used = prompt.sources.enumerated().filter { reasons[$0.offset + 1] != nil }.map(\.element.id)
        let id = try store.logAnswer(
            query: prompt.question, queryVector: prompt.search.queryVector, candidates: prompt.search.candidates, sources: prompt.sources.map(\.id),
            response: response, model: model, relevanceVersion: prompt.search.relevanceVersion, used: Set(used))
        return GroundedAnswer(answerID: id, sources: prompt.sources.map(\.id), used: used, relevanceVersion: prompt.search.relevanceVersion)
    }
}
