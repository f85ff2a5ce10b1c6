import ANELM
import Foundation
import GRDB

/// The learned re-ranker: a small network (one hidden ReLU layer) that scores how likely a chunk is to be used in
/// an answer to a query. Its input: the query⊙chunk elementwise product and the chunk vector itself (what the
/// answers tended to use, whatever the query), and six retrieval features (cosine, BM25, both reciprocal ranks,
/// the fused score, the chunk's length), standardized with the training set's mean and deviation.
/// Immutable once made: a search holds one instance from start to end, whatever version is swapped in meanwhile.
public final class RelevanceModel: @unchecked Sendable {
    public let version: Int
    public let dimensions: Int
    public let hidden: Int
    let w1: [Float]
    let b1: [Float]
    let w2: [Float]
    let b2: Float
    let mean: [Float]
    let deviation: [Float]

    static let scalarCount = 6
    var inputCount: Int { 2 * dimensions + Self.scalarCount }

    init(version: Int, dimensions: Int, hidden: Int, parameters: [Float], mean: [Float], deviation: [Float]) throws {
        let inputs = 2 * dimensions + Self.scalarCount
        guard dimensions > 0, hidden > 0, parameters.count == Self.parameterCount(inputs: inputs, hidden: hidden),
            mean.count == Self.scalarCount, deviation.count == Self.scalarCount, parameters.allSatisfy(\.isFinite)
        else { throw ANELMError("relevance model version \(version): its weights do not match its sizes (the store is corrupt)") }
        self.version = version
        self.dimensions = dimensions
        self.hidden = hidden
        w1 = Array(parameters[0..<(hidden * inputs)])
        b1 = Array(parameters[(hidden * inputs)..<(hidden * inputs + hidden)])
        w2 = Array(parameters[(hidden * inputs + hidden)..<(hidden * inputs + 2 * hidden)])
        b2 = parameters[hidden * inputs + 2 * hidden]
        self.mean = mean
        self.deviation = deviation
    }

    static func parameterCount(inputs: Int, hidden: Int) -> Int { hidden * inputs + 2 * hidden + 1 }

    var parameters: [Float] { w1 + b1 + w2 + [b2] }

    /// The six retrieval features of a candidate, before standardization.
    static func scalarFeatures(_ c: Candidate) -> [Float] {
        [
            c.denseScore,
            Float(c.bm25Score ?? 0),
            c.denseRank.map { Float(1 / (RankFusion.k + Double($0))) * 60 } ?? 0,
            c.bm25Rank.map { Float(1 / (RankFusion.k + Double($0))) * 60 } ?? 0,
            Float(c.fusedScore * 30),
            Float(log1p(Double(max(0, c.tokenCount)))),
        ]
    }

    /// The network's input for a candidate.
    static func input(_ c: Candidate, query: [Float], chunk: [Float], mean: [Float], deviation: [Float]) -> [Float] {
        var x = [Float]()
        x.reserveCapacity(2 * query.count + scalarCount)
        for i in 0..<query.count { x.append(query[i] * (i < chunk.count ? chunk[i] : 0) * Float(query.count).squareRoot()) }
        for i in 0..<query.count { x.append(i < chunk.count ? chunk[i] : 0) }
        for (i, f) in scalarFeatures(c).enumerated() { x.append((f - mean[i]) / deviation[i]) }
        return x
    }

    func logit(_ x: [Float]) -> Float {
        let inputs = inputCount
        var z = b2
        for j in 0..<hidden {
            var h = b1[j]
            let row = j * inputs
            for i in 0..<inputs { h += w1[row + i] * x[i] }
            if h > 0 { z += w2[j] * h }
        }
        return z
    }

    /// Probability that the chunk is used, from its input.
    func probability(_ c: Candidate, query: [Float], chunk: [Float]) -> Double {
        1 / (1 + exp(-Double(logit(Self.input(c, query: query, chunk: chunk, mean: mean, deviation: deviation)))))
    }

    /// The candidates ordered by the model; `score` becomes its probability.
    public func rerank(_ candidates: [Candidate], queryVector: [Float], index: VectorIndex) -> [Candidate] {
        let zero = [Float](repeating: 0, count: dimensions)
        return candidates.map { c -> Candidate in
            var c = c
            let chunk = index.rowOfChunk[c.chunkID].map { index.vector(at: $0) } ?? zero
            c.score = probability(c, query: queryVector, chunk: chunk)
            return c
        }.sorted { ($0.score, $1.chunkID) > ($1.score, $0.chunkID) }
    }

    // MARK: - Stored form

    /// Weights as little-endian f32: the parameters, then the six means and deviations.
    public var weightsData: Data { (parameters + mean + deviation).withUnsafeBytes { Data($0) } }

    static func load(version: Int, sizes: JSONValue, weights: Data) throws -> RelevanceModel {
        guard let dimensions = sizes["dimensions"]?.integerValue, let hidden = sizes["hidden"]?.integerValue, dimensions > 0, hidden > 0,
            dimensions <= 1 << 16, hidden <= 1 << 12
        else { throw ANELMError("relevance model version \(version) has no valid sizes (the store is corrupt)") }
        let count = parameterCount(inputs: 2 * dimensions + scalarCount, hidden: hidden) + 2 * scalarCount
        guard weights.count == count * 4 else {
            throw ANELMError("relevance model version \(version) has \(weights.count) bytes of weights, not \(count * 4) (the store is corrupt)")
        }
        let values = floats(weights)
        let n = values.count - 2 * scalarCount
        return try RelevanceModel(
            version: version, dimensions: dimensions, hidden: hidden, parameters: Array(values[0..<n]),
            mean: Array(values[n..<(n + scalarCount)]), deviation: Array(values[(n + scalarCount)...]))
    }
}

/// The relevance model a server or a command uses now. `current()` looks at the store's newest accepted version
/// and, when it changed, loads it and swaps it in under a lock; callers keep the instance they got, so a search in
/// flight finishes on the version it started with.
public final class RelevanceSlot: @unchecked Sendable {
    let store: ContextStore
    private let lock = NSLock()
    private var loaded: RelevanceModel?

    init(store: ContextStore) { self.store = store }

    public func current() throws -> RelevanceModel? {
        let newest = try store.read { db in
            try Int.fetchOne(db, sql: "SELECT version FROM relevance_models WHERE accepted = 1 ORDER BY version DESC LIMIT 1")
        }
        lock.lock()
        defer { lock.unlock() }
        guard let newest else {
            loaded = nil
            return nil
        }
        if let loaded, loaded.version == newest { return loaded }
        let model = try store.relevanceModel(version: newest)
        loaded = model
        return model
    }
}

extension ContextStore {
    /// A stored relevance model version.
    public func relevanceModel(version: Int) throws -> RelevanceModel {
        let row = try read { db in try Row.fetchOne(db, sql: "SELECT metrics, weights FROM relevance_models WHERE version = ?", arguments: [version]) }
        guard let row else { throw ANELMError("the store \(path) has no relevance model version \(version)") }
        let metrics = try JSONValue.parse(try row.decode(String.self, atIndex: 0), source: "relevance model \(version) metrics")
        return try RelevanceModel.load(version: version, sizes: metrics, weights: try row.decode(Data.self, atIndex: 1))
    }

    /// Every trained version with its metrics, oldest first.
    public func relevanceVersions() throws -> [(version: Int, created: Date, accepted: Bool, metrics: JSONValue)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT version, created, accepted, metrics FROM relevance_models ORDER BY version").map { row in
                (
                    try row.decode(Int.self, atIndex: 0), Date(timeIntervalSince1970: try row.decode(Double.self, atIndex: 1)),
                    try row.decode(Int.self, atIndex: 2) != 0,
                    try JSONValue.parse(try row.decode(String.self, atIndex: 3), source: "relevance model metrics")
                )
            }
        }
    }
}
