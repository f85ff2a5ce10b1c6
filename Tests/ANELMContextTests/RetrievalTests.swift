import ANELM
import Foundation
import XCTest

import ANELMContext

final class RetrievalTests: XCTestCase {
    func testReciprocalRankFusion() {
        XCTAssertEqual(RankFusion.score(ranks: [1, 1]), 2.0 / 61, accuracy: 1e-12)
        XCTAssertEqual(RankFusion.score(ranks: [3, nil]), 1.0 / 63, accuracy: 1e-12)
        XCTAssertEqual(RankFusion.score(ranks: [nil, nil]), 0)
        XCTAssertEqual(RankFusion.score(ranks: [2, 10], k: 0), 0.5 + 0.1, accuracy: 1e-12)
        // Agreement beats one first place: ranks (2, 2) over (1, absent).
        XCTAssertGreaterThan(RankFusion.score(ranks: [2, 2]), RankFusion.score(ranks: [1, nil]))
    }

    func testTopKMatchesAFullSort() {
        var rng = SeededGenerator(seed: 7)
        for n in [0, 1, 5, 100, 1000] {
            // Few distinct values: ties must come out lower row first.
            let scores = (0..<n).map { _ in Float(rng.next() % 17) / 4 }
            for k in [1, 3, 50, 2000] {
                let expected = scores.enumerated().sorted { ($0.element, $1.offset) > ($1.element, $0.offset) }.prefix(k).map(\.offset)
                XCTAssertEqual(topK(scores, k).map(\.row), Array(expected), "n \(n) k \(k)")
            }
        }
    }

    func testDenseScoresMatchPlainDotProductsInBothFormats() throws {
        var rng = SeededGenerator(seed: 3)
        let dims = 96
        let vectors = (0..<257).map { _ in normalized((0..<dims).map { _ in rng.uniform(-1, 1) }) }
        let query = normalized((0..<dims).map { _ in rng.uniform(-1, 1) })
        let pool = ThreadPool(threads: 2)
        let expected = vectors.map { zip($0, query).reduce(Float(0)) { $0 + $1.0 * $1.1 } }
        let ids = (0..<257).map { Int64($0 * 3 + 1) }
        let f32 = try VectorIndex(chunkIDs: ids, vectors: vectors, dimensions: dims, format: .f32)
        for hit in try f32.nearest(query, k: 257, pool: pool) { XCTAssertEqual(hit.score, expected[hit.row], accuracy: 1e-5) }
        XCTAssertEqual(try f32.nearest(query, k: 10, pool: pool).map(\.row), topK(expected, 10).map(\.row))
        let int8 = try VectorIndex(chunkIDs: ids, vectors: vectors, dimensions: dims, format: .int8)
        for hit in try int8.nearest(query, k: 257, pool: pool) { XCTAssertEqual(hit.score, expected[hit.row], accuracy: 0.02) }
        XCTAssertEqual(Set(try int8.nearest(query, k: 10, pool: pool).prefix(3).map(\.row)), Set(topK(expected, 3).map(\.row)))
        // Stored int8 rows decode to the vector within the quantization step.
        for (a, b) in zip(int8.vector(at: 5), vectors[5]) { XCTAssertEqual(a, b, accuracy: 0.01) }
        XCTAssertTrue(errorMessage { _ = try f32.nearest([1, 2], k: 1, pool: pool) }.contains("96"))
    }

    func makeEngine(_ folder: URL, format: VectorFormat = .f32) throws -> ContextEngine {
        let docs = folder.appendingPathComponent("docs")
        try write("Kettles boil water. Tea steeps in hot water for three minutes.", to: docs.appendingPathComponent("tea.txt"))
        try write("A bicycle chain needs oil. Bicycle tires need air.", to: docs.appendingPathComponent("bike.txt"))
        try write("Rivers flow to the sea. The sea is salty.", to: docs.appendingPathComponent("sea.txt"))
        try write("Volcanoes erupt lava. Lava cools into rock.", to: docs.appendingPathComponent("rock.txt"))
        let store = try ContextStore(path: folder.appendingPathComponent("s.sqlite").path)
        let embedder = HashingEmbedder()
        _ = try Indexer(store: store, embedder: embedder, embedderPath: "test", chunker: try Chunker(), vectorFormat: format).index([docs.path])
        return try ContextEngine(store: store, embedder: embedder, threads: 2)
    }

    func testHybridSearchRanksTheMatchingChunkFirst() throws {
        for format in VectorFormat.allCases {
            let folder = try temporaryFolder(self)
            let engine = try makeEngine(folder, format: format)
            let result = try engine.search("how long does tea steep in water")
            let hits = try engine.hits(result, topK: 2)
            XCTAssertEqual(URL(fileURLWithPath: hits[0].chunk.source).lastPathComponent, "tea.txt", "\(format)")
            let top = hits[0].candidate
            XCTAssertEqual(top.denseRank, 1)
            XCTAssertEqual(top.bm25Rank, 1)
            XCTAssertEqual(top.fusedScore, 2 / 61, accuracy: 1e-12)
            XCTAssertNil(result.relevanceVersion)
            // Scores never increase down the list.
            for (a, b) in zip(result.candidates, result.candidates.dropFirst()) { XCTAssertGreaterThanOrEqual(a.score, b.score) }
        }
    }

    func testQueryTextIsNeverFTSSyntax() throws {
        let folder = try temporaryFolder(self)
        let engine = try makeEngine(folder)
        for query in ["NEAR(tea water) AND", "\"unbalanced", "col:tea*", "^ - + ( )", "ÄÖÜ 日本語"] {
            XCTAssertNoThrow(try engine.search(query), query)
        }
        XCTAssertTrue(errorMessage { _ = try engine.search("   ") }.contains("empty"))
    }

    func testAChangedStoreIsReloaded() throws {
        let folder = try temporaryFolder(self)
        let engine = try makeEngine(folder)
        XCTAssertEqual(try engine.retriever.vectorIndex().count, 4)
        try write("Glaciers carve valleys.", to: folder.appendingPathComponent("docs/ice.txt"))
        _ = try Indexer(store: engine.store, embedder: HashingEmbedder(), embedderPath: "test", chunker: try Chunker()).index([folder.appendingPathComponent("docs").path])
        XCTAssertEqual(try engine.retriever.vectorIndex().count, 5)
    }

    func testWordsInMostChunksAreLeftOutOfBM25InLargeStores() throws {
        let folder = try temporaryFolder(self)
        let store = try ContextStore(path: folder.appendingPathComponent("s.sqlite").path)
        let embedder = HashingEmbedder()
        _ = try store.bindEmbedder(embedder, path: "test", vectorFormat: nil)
        let texts = (0..<1200).map { i in "the item number n\(i)" + (i % 100 == 0 ? " zebra" : "") }
        let chunks = texts.map { Chunk(text: $0, startByte: 0, endByte: $0.utf8.count, headingPath: "", tokenCount: 4) }
        try store.replaceDocument(path: "/big.txt", hash: "h", modified: 0, bytes: 1, chunks: chunks, vectors: try embedder.embed(texts), format: .f32)
        let retriever = try Retriever(store: store, threads: 1)
        let zebra = try retriever.bm25("the zebra", limit: 50, chunks: 1200)
        XCTAssertEqual(zebra.count, 12, "only the zebra chunks: 'the' is in every chunk")
        XCTAssertEqual(try retriever.bm25("the", limit: 50, chunks: 1200).count, 50, "a query of common words only keeps its rarest")
        // A small store keeps every word.
        XCTAssertEqual(try retriever.bm25("the zebra", limit: 50, chunks: 999).count, 50)
    }
}
