import ANELM
import Foundation

/// The relevance model for the Neural Engine: one function `score_<N>` that scores a fixed batch of N candidates
/// with the ANE IR's ops (the encoder's and decoders' layout: activations (1, C, 1, N), the layers 1×1 convs).
///
/// - inputs `query` (1, D, 1, 1): the query's vector; `chunks` (1, D, 1, N): the candidates' vectors as columns (zero
///   for a missing one, as the scorer uses); `features` (1, 6, 1, N): each candidate's six retrieval features,
///   standardized by the app in f32 with the model's mean and deviation (anelm.json `relevance`): raw features in fp16
///   lose the digits that matter when a feature's deviation is small next to its mean (a log token count of
///   2.9 ± 0.01: fp16's step at 2.9 is 0.002, a fifth of a deviation). `RelevanceModel.aneInputs` builds all three; a batch
///   with fewer candidates is padded with zero columns whose scores mean nothing;
/// - outputs `logit` and `probability` (1, 1, 1, N).
/// In the graph: the network's input [query⊙chunk·√D, chunk, features] concatenated over channels, a conv to the
/// hidden units, ReLU as (h + |h|)/2 with the ½ folded into the output conv (exact in fp16), the output conv, a sigmoid.
extension RelevanceModel {
    public static func aneFunctionName(batch: Int) -> String { "score_\(batch)" }

    /// The model as an ANE program of one function over `batch` candidates.
    public func aneProgram(batch: Int) throws -> ANEProgram {
        guard batch > 0, batch <= ANELint.maxDimension else { throw ANELMError("the relevance batch must be in 1…\(ANELint.maxDimension), got \(batch)") }
        let g = ANEGraphBuilder()
        let d = dimensions
        let inputs = inputCount
        let query = g.input("query", shape: [1, d, 1, 1])
        let chunks = g.input("chunks", shape: [1, d, 1, batch])
        let features = g.input("features", shape: [1, Self.scalarCount, 1, batch])
        let product = try g.mul(try g.mul(chunks, query), try g.constant("sqrt_dimensions", [Float(d).squareRoot()], shape: [1, 1, 1, 1]))
        let x = try g.concat([product, chunks, features], axis: 1)
        let h = try g.conv(
            x, weight: try g.constant("hidden_weight", w1, shape: [hidden, inputs, 1, 1]), bias: try g.constant("hidden_bias", b1, shape: [hidden]),
            name: "hidden")
        let doubledReLU = try g.add(h, g.abs(h))
        let logit = try g.conv(
            doubledReLU, weight: try g.constant("output_weight", w2.map { $0 / 2 }, shape: [1, hidden, 1, 1]),
            bias: try g.constant("output_bias", [b2], shape: [1]), name: "output")
        try g.output("probability", g.sigmoid(logit))
        try g.output("logit", logit)
        g.metadata = ["dimensions": d, "hidden": hidden, "batch": batch, "relevance_version": version]
        return try ANEProgram(functions: [.init(name: Self.aneFunctionName(batch: batch), graph: g.build())], metadata: g.metadata)
    }

    /// The inputs of `aneProgram(batch:)` for up to `batch` candidates of a search (the scorer's chunk vectors and
    /// features, in the candidates' order; the rest zero).
    public func aneInputs(_ candidates: [Candidate], queryVector: [Float], index: VectorIndex, batch: Int) throws -> [String: [Float]] {
        guard candidates.count <= batch, queryVector.count == dimensions else {
            throw ANELMError("\(candidates.count) candidates with a \(queryVector.count)-dimension query do not fit a batch of \(batch) at \(dimensions)")
        }
        var chunks = [Float](repeating: 0, count: dimensions * batch)
        var features = [Float](repeating: 0, count: Self.scalarCount * batch)
        for (column, c) in candidates.enumerated() {
            if let row = index.rowOfChunk[c.chunkID] {
                for (i, value) in index.vector(at: row).prefix(dimensions).enumerated() { chunks[i * batch + column] = value }
            }
            for (i, value) in Self.scalarFeatures(c).enumerated() { features[i * batch + column] = (value - mean[i]) / deviation[i] }
        }
        return ["query": queryVector, "chunks": chunks, "features": features]
    }

    /// The scorer's probability of each candidate (what `rerank` puts in `score`), in order.
    public func probabilities(_ candidates: [Candidate], queryVector: [Float], index: VectorIndex) -> [Double] {
        let zero = [Float](repeating: 0, count: dimensions)
        return candidates.map { c in probability(c, query: queryVector, chunk: index.rowOfChunk[c.chunkID].map { index.vector(at: $0) } ?? zero) }
    }
}

extension CoreMLPackage {
    /// Writes `model`'s ANE program over `batch` candidates at `path` (which must not exist yet).
    public static func exportRelevance(
        _ model: RelevanceModel, store: String, batch: Int, to path: String, weights: ANEWeightFormat = .fp16,
        lutGroup: Int = ANEWeightFormat.defaultLUTGroup, progress: @escaping (String) -> Void = { _ in }
    ) throws -> Summary {
        try checkDestination(path)
        let program = try model.aneProgram(batch: batch)
        progress("lowered relevance model version \(model.version) (\(model.dimensions) dimensions, \(model.hidden) hidden units) over \(batch) candidates")
        var info = ANEPackageInfo(
            architecture: "anelm-relevance-model", source: "\(URL(fileURLWithPath: store).lastPathComponent) version \(model.version)",
            weights: weights.rawValue, functions: program.functions.map(\.name), contextLength: batch, prefillBlock: nil, vocabSize: 0, outputChunks: 0,
            eosTokenIds: [], metadata: program.metadata)
        info.relevance = ANEPackageInfo.Relevance(featureMean: model.mean, featureDeviation: model.deviation)
        return try write(program, info: info, tokenizer: nil, to: path, weights: weights, lutGroup: lutGroup, progress: progress)
    }
}
