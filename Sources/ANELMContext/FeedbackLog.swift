import ANELM
import Foundation
import GRDB

/// The log the relevance model learns from: every grounded answer (query and its vector, every candidate with its
/// retrieval features, which ones were in the prompt and under which number, the response, the generating model
/// and the relevance model's version) and, per prompt chunk, whether the answer used it (the analyzer's mark) and
/// what a person said about it (explicit feedback, which wins over the analyzer's mark when training).
extension ContextStore {
    /// Logs an answer; `sources` are the prompt's chunks in citation order ([1] first); `used` the analyzer's marks.
    @discardableResult
    public func logAnswer(
        query: String, queryVector: [Float], candidates: [Candidate], sources: [Int64], response: String, model: String,
        relevanceVersion: Int?, used: Set<Int64>
    ) throws -> Int64 {
        let citation = Dictionary(sources.enumerated().map { ($1, $0 + 1) }, uniquingKeysWith: { first, _ in first })
        return try write { db in
            try db.execute(
                sql: "INSERT INTO answers(created, query, query_vector, response, model, relevance_version) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [Date().timeIntervalSince1970, query, VectorFormat.f32.encode(queryVector), response, model, relevanceVersion])
            let answer = db.lastInsertedRowID
            let insert = try db.cachedStatement(
                sql: """
                    INSERT INTO answer_chunks(answer_id, chunk_id, rank, dense_score, dense_rank, bm25_score, bm25_rank, fused_score, score,
                        token_count, citation, used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
            var logged = Set<Int64>()
            for (rank, c) in candidates.enumerated() where logged.insert(c.chunkID).inserted {
                let number = citation[c.chunkID]
                try insert.execute(arguments: [
                    answer, c.chunkID, rank + 1, Double(c.denseScore), c.denseRank, c.bm25Score, c.bm25Rank, c.fusedScore, c.score, c.tokenCount,
                    number, number == nil ? nil : (used.contains(c.chunkID) ? 1 : 0),
                ])
            }
            return answer
        }
    }

    /// A person's word on one chunk of a logged answer: useful or not.
    public func recordFeedback(answerID: Int64, chunkID: Int64, useful: Bool) throws {
        try write { db in
            guard try Int.fetchOne(db, sql: "SELECT 1 FROM answers WHERE id = ?", arguments: [answerID]) != nil else {
                throw ANELMError("no answer \(answerID) in the log of \(path)")
            }
            try db.execute(
                sql: "UPDATE answer_chunks SET feedback = ? WHERE answer_id = ? AND chunk_id = ?", arguments: [useful ? 1 : 0, answerID, chunkID])
            guard db.changesCount == 1 else {
                throw ANELMError("chunk \(chunkID) was not among the candidates of answer \(answerID); feedback is on the chunks an answer was offered")
            }
        }
    }

    /// Labeled candidates of every logged answer, in answer then rank order: the label is the explicit feedback
    /// where given, else the analyzer's mark; candidates with neither are left out.
    public func labeledCandidates() throws -> [(answerID: Int64, queryVector: [Float], candidate: Candidate, label: Bool)] {
        try read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT a.id, a.query_vector, c.chunk_id, c.dense_score, c.dense_rank, c.bm25_score, c.bm25_rank, c.fused_score, c.score,
                        c.token_count, COALESCE(c.feedback, c.used) AS label
                    FROM answer_chunks c JOIN answers a ON a.id = c.answer_id
                    WHERE COALESCE(c.feedback, c.used) IS NOT NULL ORDER BY a.id, c.rank
                    """)
            var vectors: [Int64: [Float]] = [:]
            return try rows.map { row in
                let answer = try row.decode(Int64.self, atIndex: 0)
                if vectors[answer] == nil {
                    let data = try row.decode(Data.self, atIndex: 1)
                    guard data.count % 4 == 0 else { throw ANELMError("answer \(answer)'s query vector is corrupt") }
                    vectors[answer] = floats(data)
                }
                let candidate = Candidate(
                    chunkID: try row.decode(Int64.self, atIndex: 2), denseScore: Float(try row.decode(Double.self, atIndex: 3)),
                    denseRank: try row.decode(Int?.self, atIndex: 4), bm25Score: try row.decode(Double?.self, atIndex: 5),
                    bm25Rank: try row.decode(Int?.self, atIndex: 6), fusedScore: try row.decode(Double.self, atIndex: 7),
                    score: try row.decode(Double.self, atIndex: 8), tokenCount: try row.decode(Int.self, atIndex: 9))
                return (answer, vectors[answer] ?? [], candidate, try row.decode(Int.self, atIndex: 10) != 0)
            }
        }
    }

    /// One logged answer's prompt chunks with their marks, for `anelm feedback` to show.
    public func loggedAnswer(_ id: Int64) throws -> (query: String, response: String, sources: [(citation: Int, chunkID: Int64, used: Bool?, feedback: Bool?)]) {
        try read { db in
            guard let answer = try Row.fetchOne(db, sql: "SELECT query, response FROM answers WHERE id = ?", arguments: [id]) else {
                throw ANELMError("no answer \(id) in the log of \(path)")
            }
            let sources = try Row.fetchAll(
                db, sql: "SELECT citation, chunk_id, used, feedback FROM answer_chunks WHERE answer_id = ? AND citation IS NOT NULL ORDER BY citation",
                arguments: [id]
            ).map { row in
                (
                    try row.decode(Int.self, atIndex: 0), try row.decode(Int64.self, atIndex: 1), try row.decode(Int?.self, atIndex: 2).map { $0 != 0 },
                    try row.decode(Int?.self, atIndex: 3).map { $0 != 0 }
                )
            }
            return (try answer.decode(String.self, atIndex: 0), try answer.decode(String.self, atIndex: 1), sources)
        }
    }
}
