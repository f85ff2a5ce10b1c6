import ANELM
import Foundation

/// `anelm context bench`: a synthetic store of N chunks (texts of words drawn with a Zipf-like skew, random unit
/// vectors standing in for an embedder's), how long writing it takes, and how long queries take — dense, BM25 and
/// the whole retrieval (fusion, and a relevance model's re-ranking when `rerank`). Embedding time is not in it: that
/// is the embedder's, measured by its own benchmark.
public enum ContextBenchmark {
    public struct Result: Sendable {
        public var chunks: Int
        public var dimensions: Int
        public var format: VectorFormat
        public var writeSeconds: Double
        public var loadSeconds: Double
        public var dense: [Double]
        public var bm25: [Double]
        public var rerank: [Double]
        public var total: [Double]
        public var storeBytes: Int
    }

    public static func run(
        path: String, chunks: Int, dimensions: Int, queries: Int, format: VectorFormat, threads: Int, seed: UInt64 = 1,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> Result {
        guard chunks > 0, dimensions > 0, queries > 0 else { throw ANELMError("chunks, dimensions and queries must be positive") }
        let store = try ContextStore(path: path)
        guard try store.counts().chunks == 0 else { throw ANELMError("\(path) is not empty; the benchmark writes a new store") }
        let embedder = SyntheticEmbedder(dimensions: dimensions)
        _ = try store.bindEmbedder(embedder, path: "synthetic", vectorFormat: format)
        var rng = SeededGenerator(seed: seed)
        let vocabulary = 20_000
        func word() -> String { "w\(Int(pow(Double(rng.next() % 1_000_000) / 1_000_000, 3) * Double(vocabulary)))" }
        func vector() -> [Float] { normalized((0..<dimensions).map { _ in rng.uniform(-1, 1) }) }

        let perDocument = 100
        var written = 0
        let started = DispatchTime.now().uptimeNanoseconds
        while written < chunks {
            let n = min(perDocument, chunks - written)
            var offset = 0
            let docChunks = (0..<n).map { _ -> Chunk in
                let text = (0..<60).map { _ in word() }.joined(separator: " ")
                defer { offset += text.utf8.count + 2 }
                return Chunk(text: text, startByte: offset, endByte: offset + text.utf8.count, headingPath: "", tokenCount: 60)
            }
            try store.replaceDocument(
                path: "/synthetic/doc\(written / perDocument).txt", hash: "\(written)", modified: 0, bytes: offset, chunks: docChunks,
                vectors: docChunks.map { _ in vector() }, format: format)
            written += n
            progress(written, chunks)
        }
        let writeSeconds = seconds(since: started)

        let retriever = try Retriever(store: store, threads: threads)
        let loadStarted = DispatchTime.now().uptimeNanoseconds
        _ = try retriever.vectorIndex()
        let loadSeconds = seconds(since: loadStarted)
        // A relevance model with seeded random weights: what re-ranking costs does not depend on what it learned.
        var weights = SeededGenerator(seed: seed + 1)
        let hidden = TrainingOptions().hidden
        let inputs = 2 * dimensions + RelevanceModel.scalarCount
        let model = try RelevanceModel(
            version: 0, dimensions: dimensions, hidden: hidden,
            parameters: (0..<RelevanceModel.parameterCount(inputs: inputs, hidden: hidden)).map { _ in weights.uniform(-0.1, 0.1) },
            mean: Array(repeating: 0, count: RelevanceModel.scalarCount), deviation: Array(repeating: 1, count: RelevanceModel.scalarCount))
        var result = Result(
            chunks: chunks, dimensions: dimensions, format: format, writeSeconds: writeSeconds, loadSeconds: loadSeconds, dense: [], bm25: [], rerank: [],
            total: [], storeBytes: 0)
        for q in 0..<(queries + 3) {
            let text = (0..<4).map { _ in word() }.joined(separator: " ")
            let search = try retriever.search(query: text, queryVector: vector(), relevanceModel: model)
            if q < 3 { continue }  // warm-up: caches, first FTS5 pages
            result.dense.append(search.timings.denseSeconds)
            result.bm25.append(search.timings.bm25Seconds)
            result.rerank.append(search.timings.rerankSeconds)
            result.total.append(search.timings.totalSeconds)
        }
        result.storeBytes = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
        return result
    }

    static func seconds(since start: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }

    /// Stands in for an embedder in the benchmark store's record; its vectors are never asked for.
    final class SyntheticEmbedder: TextEmbedder {
        let dimensions: Int
        let maxSequenceLength = 512
        var identifier: String { "synthetic-random-\(dimensions)" }
        init(dimensions: Int) { self.dimensions = dimensions }
        func tokenCount(of text: String) throws -> Int { Retriever.tokens(text).count }
        func embed(_ texts: [String]) throws -> [[Float]] { throw ANELMError("the benchmark's synthetic store has no embedder") }
    }
}

extension Array where Element == Double {
    /// The value below which `p` of the sorted values lie (nearest rank).
    public func percentile(_ p: Double) -> Double {
        guard !isEmpty else { return 0 }
        let sorted = self.sorted()
        return sorted[Swift.min(sorted.count - 1, Swift.max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))]
    }
}
