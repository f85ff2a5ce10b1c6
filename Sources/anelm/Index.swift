import ANELM
import ANELMContext
import ANELMInstall
import ArgumentParser
import Foundation

/// `--store PATH`, shared by the context commands.
struct StoreOption: ParsableArguments {
    @Option(name: .long, help: "The context store, one SQLite file (default: <cache>/context/store.sqlite).")
    var store: String = ContextStore.defaultPath

    /// The store with the embedder that built it.
    func openEngine(threads: Int? = nil) throws -> ContextEngine { try Self.openEngine(store, threads: threads) }

    static func openEngine(_ store: String, threads: Int? = nil) throws -> ContextEngine {
        try ContextEngine.open(storePath: store, threads: threads) { record in
            try EmbedderLoader.load(URL(fileURLWithPath: record.path))
        }
    }
}

struct Index: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Index files and folders into a context store: chunked, embedded, searchable (only changed files are read again).")

    @OptionGroup var storeOption: StoreOption
    @Option(name: .long, help: "The embedder (a folder); only for a new store, which remembers it (default: all-MiniLM-L6-v2, installed on first use).")
    var model: String?
    @Option(name: .long, help: "f32 or int8 (a quarter of the memory per vector); only for a new store.") var vectors: String?
    @Option(name: .long, parsing: .unconditional, help: "Tokens per chunk at most (default: 200, at most the embedder's sequence length).")
    var chunkTokens: Int?
    @Option(name: .long, parsing: .unconditional, help: "Tokens consecutive chunks share.") var overlapTokens: Int = 40
    @Argument(help: "Files and folders (folders: .txt, .md, .html, source code; hidden entries skipped).") var paths: [String]

    func run() throws {
        guard !paths.isEmpty else { throw ANELMError("name files or folders to index") }
        let format = try vectors.map { name in
            guard let f = VectorFormat(rawValue: name) else { throw ANELMError("--vectors must be f32 or int8, not \(name)") }
            return f
        }
        let store = try ContextStore(path: storeOption.store)
        let embedderPath: String
        if let model {
            embedderPath = URL(fileURLWithPath: model).standardizedFileURL.path
        } else if let record = try store.embedderRecord() {
            embedderPath = record.path
        } else {
            embedderPath = try DefaultEmbedder.installIfNeeded(log: printError).path
        }
        let embedder = try EmbedderLoader.load(URL(fileURLWithPath: embedderPath))
        let chunker = try Chunker(maxTokens: min(chunkTokens ?? 200, embedder.maxSequenceLength), overlapTokens: overlapTokens)
        let indexer = try Indexer(store: store, embedder: embedder, embedderPath: embedderPath, chunker: chunker, vectorFormat: format)
        let bar = ProgressBar()
        // Ctrl-C: the file being written is rolled back by SQLite; a rerun resumes from the files already stored.
        let report = try indexer.index(paths) { p in
            bar.show(done: p.filesDone, of: p.filesTotal, label: "indexing: \(p.filesDone)/\(p.filesTotal) files, \(p.chunksEmbedded) chunks embedded")
        }
        bar.finish()
        let counts = try store.counts()
        print(
            "indexed \(report.indexed) files (\(report.chunksAdded) chunks), unchanged \(report.unchanged), removed \(report.removed), empty \(report.empty), "
                + "skipped \(report.skippedBinary) binary and \(report.skippedUnreadable) unreadable; the store holds \(counts.documents) documents, \(counts.chunks) chunks")
    }
}
