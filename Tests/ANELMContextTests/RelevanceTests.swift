import ANELM
import Foundation
import GRDB
import XCTest

import ANELMContext

/// The feedback loop end to end on a synthetic corpus. Per topic, three "manual" chunks, three "FAQ" chunks and four
/// "forum" chunks that repeat the topic's name (so BM25 and the cosine rank the forums first). The hidden rule: a
/// chunk is useful for a question iff it is a manual chunk of the question's topic. A simulated answerer copies and
/// cites exactly the useful chunks it is shown; the analyzer marks them; the relevance model learns from the log.
/// Each round asks about three topics not asked before (three phrasings each); quality is measured on all twelve
/// topics with a phrasing never asked. Prompts give 4 of their 8 places to exploration (`groundedPrompt`): without
/// it the log never shows a far-down chunk, and the first model learned "lower cosine is better" (quality fell to 0).
final class RelevanceTests: XCTestCase {
    static let topics = [
        "kettle", "bicycle", "glacier", "volcano", "orchard", "lighthouse", "violin", "compass", "harbor", "meadow", "canyon", "lantern",
    ]

    func makeCorpus(_ folder: URL) throws -> ContextEngine {
        let docs = folder.appendingPathComponent("corpus")
        for (t, topic) in Self.topics.enumerated() {
            for i in 0..<3 {
                try write(
                    "Manual \(i) for the \(topic): step \(i) fits part p\(t)x\(i) with tool q\(t)y\(i); verified specification reference.",
                    to: docs.appendingPathComponent("\(topic)-manual-\(i).txt"))
                try write(
                    "FAQ \(i) about the \(topic): question \(i) on piece f\(t)x\(i) and reply a\(t)y\(i); community frequently asked.",
                    to: docs.appendingPathComponent("\(topic)-faq-\(i).txt"))
            }
            for i in 0..<4 {
                try write(
                    "\(topic) \(topic) \(topic) forum \(i): someone asked about the \(topic) again, \(topic) chatter thread reply r\(t)z\(i).",
                    to: docs.appendingPathComponent("\(topic)-forum-\(i).txt"))
            }
        }
        let store = try ContextStore(path: folder.appendingPathComponent("s.sqlite").path)
        // 256 buckets: few hash collisions between the corpus's words, so that the embedder's "meaning" is the words.
        let embedder = HashingEmbedder(dimensions: 256)
        _ = try Indexer(store: store, embedder: embedder, embedderPath: "test", chunker: try Chunker()).index([docs.path])
        return try ContextEngine(store: store, embedder: embedder, threads: 2)
    }

    /// The hidden rule.
    static func isUseful(_ chunk: StoredChunk, for topic: String) -> Bool {
        URL(fileURLWithPath: chunk.source).lastPathComponent.hasPrefix("\(topic)-manual-")
    }

    /// Asks one question per topic in the form `template` (its `#` is the topic); the simulated answerer copies the first clause of each useful
    /// source and cites it. Returns the logged answers.
    @discardableResult
    func askRound(_ engine: ContextEngine, template: String, topics: [String] = RelevanceTests.topics) throws -> [GroundedAnswer] {
        try topics.map { topic in
            let question = template.replacingOccurrences(of: "#", with: topic)
            let prompt = try engine.groundedPrompt(question: question, topK: 8, budget: 100_000, exploration: 4) { messages in
                messages.reduce(0) { $0 + Retriever.tokens($1.content).count }
            }
            var answer = ""
            for (i, chunk) in prompt.sources.enumerated() where Self.isUseful(chunk, for: topic) {
                answer += (chunk.text.split(separator: ";").first.map(String.init) ?? chunk.text) + " [\(i + 1)]. "
            }
            if answer.isEmpty { answer = "I do not know." }
            return try engine.record(prompt, response: answer, model: "simulated")
        }
    }

    /// Mean nDCG@5 of the engine's ranking (with the relevance model in use) against the hidden rule.
    func quality(_ engine: ContextEngine) throws -> Double {
        var groups: [[(Candidate, Bool)]] = []
        for topic in Self.topics {
            let result = try engine.search("Which \(topic) steps should I follow?")
            let chunks = Dictionary(try engine.store.chunks(result.candidates.map(\.chunkID)).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            var ranked = result.candidates
            // Useful chunks the search did not return at all count as ranked last.
            for (i, c) in ranked.enumerated() { ranked[i].score = Double(ranked.count - i) }
            groups.append(ranked.map { c in (c, chunks[c.chunkID].map { Self.isUseful($0, for: topic) } ?? false) })
        }
        return RankingMetrics.measure(groups) { $0.score }.ndcg5
    }

    func testRetrievalQualityRisesRoundOverRound() throws {
        let folder = try temporaryFolder(self)
        let engine = try makeCorpus(folder)
        var qualities = [try quality(engine)]
        var reports: [TrainingReport] = []
        for round in 0..<4 {
            let topics = Array(Self.topics[(3 * round)..<(3 * round + 3)])
            for template in ["How do I use the # today?", "What should I know about my #?", "Any advice on the # please"] {
                try askRound(engine, template: template, topics: topics)
            }
            var options = TrainingOptions()
            options.seed = UInt64(round + 1)
            options.minimumAnswers = 2
            reports.append(try RelevanceTrainer.train(store: engine.store, index: try engine.retriever.vectorIndex(), options: options))
            qualities.append(try quality(engine))
        }
        let summary = zip(qualities, [nil] + reports.map { Optional($0) }).map { q, r in
            "nDCG@5 \(String(format: "%.3f", q))" + (r.map { " (v\($0.version) \($0.accepted ? "accepted" : "kept old"): held-out \(String(format: "%.3f", $0.before.ndcg5)) → \(String(format: "%.3f", $0.after.ndcg5)))" } ?? "")
        }.joined(separator: "; ")
        print("simulation: \(summary)")
        // The fused retrieval alone puts the forum chunks first.
        XCTAssertLessThan(qualities[0], 0.2, summary)
        // The first model is accepted and lifts quality; no later round loses any of it. Here the rule is learned
        // in one round (0.06 → 1.0); later versions are then no better on the held-out answers and the one in use stays.
        XCTAssertTrue(reports[0].accepted, summary)
        XCTAssertGreaterThan(qualities[1], qualities[0] + 0.5, summary)
        for r in 1..<qualities.count { XCTAssertGreaterThanOrEqual(qualities[r], qualities[r - 1] - 1e-9, summary) }
        XCTAssertGreaterThan(qualities.last ?? 0, 0.95, summary)
        // A version that is not better on the held-out answers is stored but not used.
        for report in reports where !report.accepted { XCTAssertLessThanOrEqual(report.after.ndcg5, report.before.ndcg5, summary) }
        XCTAssertEqual(try engine.store.relevanceVersions().count, reports.count)
        // Every answer records the relevance model it was ranked with.
        let versions = try engine.store.read { db in try Int?.fetchAll(db, sql: "SELECT relevance_version FROM answers ORDER BY id") }
        XCTAssertEqual(Array(versions.prefix(9)), Array(repeating: nil, count: 9))
        XCTAssertEqual(versions[9], reports[0].version)
    }

    func testTrainingIsDeterministicForASeed() throws {
        let folder = try temporaryFolder(self)
        let engine = try makeCorpus(folder)
        try askRound(engine, template: "How do I use the # today?")
        let index = try engine.retriever.vectorIndex()
        var options = TrainingOptions()
        options.seed = 42
        let a = try RelevanceTrainer.train(store: engine.store, index: index, options: options)
        let b = try RelevanceTrainer.train(store: engine.store, index: index, options: options)
        XCTAssertEqual(try engine.store.relevanceModel(version: a.version).weightsData, try engine.store.relevanceModel(version: b.version).weightsData)
        XCTAssertEqual(a.after, b.after)
        options.seed = 43
        let c = try RelevanceTrainer.train(store: engine.store, index: index, options: options)
        XCTAssertNotEqual(try engine.store.relevanceModel(version: a.version).weightsData, try engine.store.relevanceModel(version: c.version).weightsData)
    }

    /// The relevance model as an ANE function on the fp16 executor against the Swift scorer, on every topic's search
    /// candidates (padded to the batch): stated bound |Δ probability| ≤ 0.01 per candidate at fp16. Then its package
    /// passes the ANE lint and reads back.
    func testTheModelOnTheNeuralEngineMatchesTheScorer() throws {
        let folder = try temporaryFolder(self)
        let engine = try makeCorpus(folder)
        try askRound(engine, template: "How do I use the # today?")
        var options = TrainingOptions()
        options.seed = 7
        let index = try engine.retriever.vectorIndex()
        let report = try RelevanceTrainer.train(store: engine.store, index: index, options: options)
        let model = try engine.store.relevanceModel(version: report.version)
        let batch = 64
        let program = try model.aneProgram(batch: batch)
        XCTAssertEqual(program.functions.map(\.name), ["score_64"])
        let executor = ANEExecutor(program: program)
        var worst = 0.0
        var scored = 0
        for topic in Self.topics {
            let result = try engine.search("Which \(topic) steps should I follow?", rerank: false)
            let candidates = Array(result.candidates.prefix(batch))
            let expected = model.probabilities(candidates, queryVector: result.queryVector, index: index)
            let outputs = try executor.run("score_64", try model.aneInputs(candidates, queryVector: result.queryVector, index: index, batch: batch))
            let probabilities = try XCTUnwrap(outputs["probability"])
            XCTAssertEqual(probabilities.count, batch)
            for (i, p) in expected.enumerated() {
                worst = max(worst, abs(Double(probabilities[i]) - p))
                XCTAssertEqual(Double(probabilities[i]), p, accuracy: 0.01, "\(topic): candidate \(i)")
            }
            scored += candidates.count
        }
        print("relevance on the ANE executor: worst |Δ probability| \(worst) over \(scored) candidates")
        XCTAssertGreaterThan(scored, Self.topics.count)

        let package = folder.appendingPathComponent("relevance.mlpackage").path
        let summary = try CoreMLPackage.exportRelevance(model, store: engine.store.path, batch: batch, to: package)
        XCTAssertEqual(summary.operations.map(\.function), ["score_64"])
        let lint = try ANELint(package: package)
        XCTAssertTrue(lint.violations.isEmpty, lint.text)
        let info = try ANEPackageInfo.read(package: package)
        XCTAssertEqual(info.metadata["relevance_version"], model.version)
        XCTAssertEqual(info.relevance?.featureMean.count, 6)
        XCTAssertEqual(info.relevance?.featureDeviation.count, 6)
        XCTAssertThrowsError(try model.aneProgram(batch: 0))
    }

    func testTrainingNeedsALog() throws {
        let folder = try temporaryFolder(self)
        let engine = try makeCorpus(folder)
        let message = errorMessage { _ = try RelevanceTrainer.train(store: engine.store, index: try engine.retriever.vectorIndex()) }
        XCTAssertTrue(message.contains("at least 4"), message)
    }

    func testANewVersionIsSwappedInAndSearchesInFlightKeepTheirs() throws {
        let folder = try temporaryFolder(self)
        let engine = try makeCorpus(folder)
        try askRound(engine, template: "How do I use the # today?")
        let first = try RelevanceTrainer.train(store: engine.store, index: try engine.retriever.vectorIndex())
        XCTAssertTrue(first.accepted)
        // A request starts on version 1…
        let inFlight = try XCTUnwrap(try engine.retriever.relevance.current())
        XCTAssertEqual(inFlight.version, first.version)
        let vector = try engine.embed(["How do I use the kettle now?"])[0]
        let before = try engine.retriever.search(query: "How do I use the kettle now?", queryVector: vector, relevanceModel: inFlight)
        // …a new version lands (as another process's `context train` would write it)…
        let next = first.version + 1
        try engine.store.write { db in
            try db.execute(
                sql: "INSERT INTO relevance_models(version, created, accepted, metrics, weights) SELECT ?, created, 1, metrics, weights FROM relevance_models WHERE version = ?",
                arguments: [next, first.version])
        }
        // …new requests get it without a restart, while the one in flight finishes on version 1 and logs that.
        XCTAssertEqual(try engine.retriever.relevance.current()?.version, next)
        let after = try engine.retriever.search(query: "How do I use the kettle now?", queryVector: vector, relevanceModel: inFlight)
        XCTAssertEqual(after.relevanceVersion, first.version)
        XCTAssertEqual(after.candidates.map(\.chunkID), before.candidates.map(\.chunkID))
        let prompt = GroundedPrompt(question: "How do I use the kettle now?", messages: [], sources: [], search: after)
        let logged = try engine.record(prompt, response: "I do not know.", model: "simulated")
        XCTAssertEqual(logged.relevanceVersion, first.version)
        let stored = try engine.store.read { db in try Int.fetchOne(db, sql: "SELECT relevance_version FROM answers WHERE id = ?", arguments: [logged.answerID]) }
        XCTAssertEqual(stored, first.version)
        XCTAssertEqual(try engine.search("kettle").relevanceVersion, next)
    }

    func testFeedbackOverridesTheAnalyzer() throws {
        let folder = try temporaryFolder(self)
        let engine = try makeCorpus(folder)
        let answers = try askRound(engine, template: "How do I use the # today?")
        let answer = answers[0]
        let chunk = try XCTUnwrap(answer.sources.first { !answer.used.contains($0) })
        try engine.store.recordFeedback(answerID: answer.answerID, chunkID: chunk, useful: true)
        let labeled = try engine.store.labeledCandidates().filter { $0.answerID == answer.answerID && $0.candidate.chunkID == chunk }
        XCTAssertEqual(labeled.map(\.label), [true])
        XCTAssertTrue(errorMessage { try engine.store.recordFeedback(answerID: 999_999, chunkID: chunk, useful: true) }.contains("no answer"))
        XCTAssertTrue(errorMessage { try engine.store.recordFeedback(answerID: answer.answerID, chunkID: -5, useful: false) }.contains("not among"))
    }
}
