import ANELM
import ANELMContext
import ArgumentParser
import Foundation

struct Context: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The context store's relevance model: train it from the answer log, show its versions, measure retrieval speed.",
        subcommands: [Train.self, Status.self, Bench.self])

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train a new relevance model version from the log; it is used only if it ranks the held-out answers better.")
        @OptionGroup var storeOption: StoreOption
        @Option(name: .long, parsing: .unconditional, help: "Random seed (the same log and seed give the same model).") var seed: UInt64 = 1
        @Option(name: .long, parsing: .unconditional) var epochs: Int = TrainingOptions().epochs
        @Option(name: .long, parsing: .unconditional, help: "Hidden units.") var hidden: Int = TrainingOptions().hidden
        @Option(name: .long, help: "text, or json (one object).") var format: OutputFormat = .text

        func run() throws {
            guard epochs > 0, epochs <= 10_000, hidden > 0, hidden <= 1024 else { throw ANELMError("--epochs must be in 1…10000 and --hidden in 1…1024") }
            let store = try ContextStore(path: storeOption.store, create: false)
            guard let record = try store.embedderRecord() else { throw ANELMError("the store \(storeOption.store) is empty") }
            var options = TrainingOptions()
            options.seed = seed
            options.epochs = epochs
            options.hidden = hidden
            let report = try RelevanceTrainer.train(store: store, index: try VectorIndex(store: store, record: record), options: options)
            let against = report.comparedWith.map { "version \($0)" } ?? "retrieval alone"
            switch format {
            case .json:
                try writeJSONLine([
                    "version": report.version, "accepted": report.accepted, "compared_with": report.comparedWith.map { $0 as Any } ?? "retrieval",
                    "training_answers": report.trainingAnswers, "held_out_answers": report.heldOutAnswers, "examples": report.examples,
                    "before": ["ndcg@5": report.before.ndcg5, "recall@5": report.before.recall5],
                    "after": ["ndcg@5": report.after.ndcg5, "recall@5": report.after.recall5],
                ])
            case .text:
                print(
                    "version \(report.version): trained on \(report.trainingAnswers) answers (\(report.examples) labeled chunks), measured on \(report.heldOutAnswers) held out")
                print(
                    "  nDCG@5 \(String(format: "%.3f", report.before.ndcg5)) → \(String(format: "%.3f", report.after.ndcg5)), recall@5 \(String(format: "%.3f", report.before.recall5)) → \(String(format: "%.3f", report.after.recall5)) (before: \(against))"
                )
                print(report.accepted ? "  in use from now on (a running server picks it up with its next request)" : "  not better: the version in use stays")
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "What the store holds and its relevance model versions.")
        @OptionGroup var storeOption: StoreOption

        func run() throws {
            let store = try ContextStore(path: storeOption.store, create: false)
            let counts = try store.counts()
            if let record = try store.embedderRecord() {
                print("embedder: \(record.identifier) (\(record.dimensions) dimensions, \(record.vectorFormat.rawValue) vectors) from \(record.path)")
            }
            print("documents: \(counts.documents), chunks: \(counts.chunks), logged answers: \(counts.answers)")
            for v in try store.relevanceVersions() {
                let before = v.metrics["before"]?["ndcg@5"]?.numberValue ?? 0
                let after = v.metrics["after"]?["ndcg@5"]?.numberValue ?? 0
                print(
                    "relevance v\(v.version) \(v.accepted ? "accepted" : "rejected") \(ISO8601DateFormatter().string(from: v.created)): nDCG@5 \(String(format: "%.3f", before)) → \(String(format: "%.3f", after))"
                )
            }
        }
    }

    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Retrieval speed on synthetic stores (random vectors, Zipf-like texts): write time, then query latency (median, p95).")
        @Option(name: .long, help: "Store sizes in chunks, comma-separated.") var chunks: String = "10000,100000"
        @Option(name: .long, parsing: .unconditional) var dimensions: Int = 384
        @Option(name: .long, parsing: .unconditional) var queries: Int = 50
        @Option(name: .long, help: "f32 or int8.") var vectors: String = "f32"
        @Option(name: .long, parsing: .unconditional, help: "Worker threads (default: physical cores).") var threads: Int?
        @Option(name: .long, help: "Folder for the temporary stores (default: the system's).") var folder: String?

        func run() throws {
            guard let format = VectorFormat(rawValue: vectors) else { throw ANELMError("--vectors must be f32 or int8") }
            let sizes = try chunks.split(separator: ",").map { s -> Int in
                guard let n = Int(s.trimmingCharacters(in: .whitespaces)), n > 0 else { throw ANELMError("--chunks takes positive counts, not \(s)") }
                return n
            }
            let threads = threads ?? ThreadPool.physicalCoreCount
            print("| chunks | vectors | write (chunks/s) | load matrix | dense median / p95 | BM25 median / p95 | re-rank median | query total median / p95 |")
            print("|---|---|---|---|---|---|---|---|")
            for size in sizes {
                let base = URL(fileURLWithPath: folder ?? NSTemporaryDirectory()).appendingPathComponent("anelm-bench-\(UUID().uuidString).sqlite").path
                defer { for suffix in ["", "-wal", "-shm", "-journal"] { try? FileManager.default.removeItem(atPath: base + suffix) } }
                let bar = ProgressBar()
                let r = try ContextBenchmark.run(path: base, chunks: size, dimensions: dimensions, queries: queries, format: format, threads: threads) {
                    bar.show(done: $0, of: $1, label: "writing \(size) chunks")
                }
                bar.finish()
                func ms(_ x: Double) -> String { String(format: "%.1f", x * 1000) }
                print(
                    "| \(size) | \(dimensions) \(format.rawValue) | \(Int(Double(size) / r.writeSeconds)) | \(ms(r.loadSeconds)) ms | \(ms(r.dense.percentile(0.5))) / \(ms(r.dense.percentile(0.95))) ms | \(ms(r.bm25.percentile(0.5))) / \(ms(r.bm25.percentile(0.95))) ms | \(ms(r.rerank.percentile(0.5))) ms | \(ms(r.total.percentile(0.5))) / \(ms(r.total.percentile(0.95))) ms |"
                )
            }
            printError("threads: \(threads), ISA: \(Kernels.isaName); embedding time excluded (synthetic vectors)")
        }
    }
}
