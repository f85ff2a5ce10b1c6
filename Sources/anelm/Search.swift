import ANELM
import ANELMContext
import ArgumentParser
import Foundation

struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Search a context store: dense cosine and BM25 fused by reciprocal rank, re-ranked by the relevance model when one is trained.")

    @OptionGroup var storeOption: StoreOption
    @Option(name: .long, help: "What to look for.") var query: String
    @Option(name: .long, parsing: .unconditional, help: "Chunks to return.") var topK: Int = 5
    @Flag(name: .long, help: "Do not re-rank with the relevance model.") var noRerank = false
    @Option(name: .long, parsing: .unconditional, help: "Worker threads for the dense search (default: physical cores).") var threads: Int?
    @Option(name: .long, help: "text, or json (one object).") var format: OutputFormat = .text

    func run() throws {
        guard topK > 0 else { throw ANELMError("--top-k must be at least 1") }
        let engine = try storeOption.openEngine(threads: threads)
        let result = try engine.search(query, rerank: !noRerank)
        let hits = try engine.hits(result, topK: topK)
        switch format {
        case .json:
            try writeJSONLine([
                "query": query, "relevance_version": result.relevanceVersion.map { $0 as Any } ?? NSNull(),
                "milliseconds": result.timings.totalSeconds * 1000,
                "results": hits.map { hit -> [String: Any] in
                    var object: [String: Any] = [
                        "source": hit.chunk.source, "chunk": hit.chunk.id, "start_byte": hit.chunk.startByte, "end_byte": hit.chunk.endByte,
                        "heading_path": hit.chunk.headingPath, "score": hit.candidate.score, "text": hit.chunk.text,
                        "dense_score": Double(hit.candidate.denseScore), "fused_score": hit.candidate.fusedScore,
                    ]
                    object["dense_rank"] = hit.candidate.denseRank
                    object["bm25_rank"] = hit.candidate.bm25Rank
                    object["bm25_score"] = hit.candidate.bm25Score
                    return object
                },
            ])
        case .text:
            for (i, hit) in hits.enumerated() {
                let heading = hit.chunk.headingPath.isEmpty ? "" : " › \(hit.chunk.headingPath)"
                print("\(i + 1). \(hit.chunk.source)\(heading)  [chunk \(hit.chunk.id), bytes \(hit.chunk.startByte)–\(hit.chunk.endByte), score \(String(format: "%.4f", hit.candidate.score))]")
                print("   " + hit.chunk.text.prefix(300).replacingOccurrences(of: "\n", with: "\n   "))
            }
            printError(
                "\(result.candidates.count) candidates in \(oneDecimal(result.timings.totalSeconds * 1000)) ms"
                    + (result.relevanceVersion.map { ", re-ranked by relevance model v\($0)" } ?? ""))
        }
    }
}
