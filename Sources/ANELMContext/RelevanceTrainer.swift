import ANELM
import Foundation
import GRDB

/// Ranking quality over a set of answers: each answer's labeled chunks ordered by a ranker, binary gains.
public struct RankingMetrics: Sendable, Equatable {
    /// Mean nDCG@5 (DCG of the ranker's first five over the ideal's).
    public var ndcg5: Double
    /// Mean share of an answer's useful chunks that are in the ranker's first five.
    public var recall5: Double
    /// Answers measured (those with at least one useful chunk).
    public var answers: Int

    var json: JSONValue { ["ndcg@5": .double(ndcg5), "recall@5": .double(recall5), "answers": .int(answers)] }

    /// Metrics of `rank` (higher is better; ties by chunk id) over groups of (candidate, label).
    public static func measure(_ groups: [[(Candidate, Bool)]], score: (Candidate) -> Double) -> RankingMetrics {
        var ndcg = 0.0
        var recall = 0.0
        var measured = 0
        for group in groups {
            let relevant = group.filter(\.1).count
            guard relevant > 0 else { continue }
            let ordered = group.map { ($0, $1, score($0)) }.sorted { ($0.2, $1.0.chunkID) > ($1.2, $0.0.chunkID) }
            var dcg = 0.0
            var found = 0
            for (i, item) in ordered.prefix(5).enumerated() where item.1 {
                dcg += 1 / log2(Double(i + 2))
                found += 1
            }
            let ideal = (0..<min(5, relevant)).reduce(0.0) { $0 + 1 / log2(Double($1 + 2)) }
            ndcg += dcg / ideal
            recall += Double(found) / Double(relevant)
            measured += 1
        }
        guard measured > 0 else { return RankingMetrics(ndcg5: 0, recall5: 0, answers: 0) }
        return RankingMetrics(ndcg5: ndcg / Double(measured), recall5: recall / Double(measured), answers: measured)
    }
}

/// How `anelm context train` trains.
public struct TrainingOptions: Sendable {
    public var seed: UInt64 = 1
    public var hidden = 16
    public var epochs = 40
    public var learningRate: Float = 0.005
    public var batchSize = 16
    public var weightDecay: Float = 1e-4
    /// Share of the logged answers held out to measure before and after (split by answer, seeded).
    public var heldOutFraction = 0.25
    /// Labeled answers needed before training is worth it.
    public var minimumAnswers = 4
    public init() {}
}

/// What a training run did: the version it wrote, whether it became the one in use, the metrics on held-out answers.
public struct TrainingReport: Sendable {
    public var version: Int
    public var accepted: Bool
    /// The ranking measured against: the relevance model in use (its version) or, with none, the fused retrieval order.
    public var comparedWith: Int?
    public var trainingAnswers: Int
    public var heldOutAnswers: Int
    public var examples: Int
    public var before: RankingMetrics
    public var after: RankingMetrics
}

/// Trains the relevance model from the feedback log in plain Swift: binary cross-entropy, Adam, seeded
/// initialization and shuffling, so the same log and seed give the same weights.
public enum RelevanceTrainer {
    struct Example {
        var answer: Int64
        var candidate: Candidate
        var input: [Float]
        var label: Bool
    }

    /// Trains on the store's log and writes a new version; it becomes the one in use only if its nDCG@5 on the
    /// held-out answers beats the ranking in use now (the current model, or the fused order when there is none).
    public static func train(store: ContextStore, index: VectorIndex, options: TrainingOptions = TrainingOptions()) throws -> TrainingReport {
        let labeled = try store.labeledCandidates()
        let dimensions = index.dimensions
        var byAnswer: [Int64: [(Candidate, [Float], [Float], Bool)]] = [:]
        var order: [Int64] = []
        for item in labeled {
            // A chunk deleted since the answer has no vector left to learn from.
            guard let row = index.rowOfChunk[item.candidate.chunkID], item.queryVector.count == dimensions else { continue }
            if byAnswer[item.answerID] == nil { order.append(item.answerID) }
            byAnswer[item.answerID, default: []].append((item.candidate, item.queryVector, index.vector(at: row), item.label))
        }
        let usable = order.filter { byAnswer[$0]?.contains(where: { $0.3 }) == true }
        guard usable.count >= options.minimumAnswers else {
            throw ANELMError(
                "the log of \(store.path) has \(usable.count) answers with a chunk marked used; training needs at least \(options.minimumAnswers) (ask more questions with anelm ask, or give feedback)"
            )
        }
        var rng = SeededGenerator(seed: options.seed)
        var shuffled = order
        rng.shuffle(&shuffled)
        let heldOutCount = max(1, Int((Double(shuffled.count) * options.heldOutFraction).rounded()))
        let heldOut = Set(shuffled.prefix(heldOutCount))

        // Standardize the scalar features with the training answers' statistics.
        let trainingItems = order.filter { !heldOut.contains($0) }.flatMap { byAnswer[$0] ?? [] }
        var mean = [Float](repeating: 0, count: RelevanceModel.scalarCount)
        var deviation = [Float](repeating: 1, count: RelevanceModel.scalarCount)
        if !trainingItems.isEmpty {
            let features = trainingItems.map { RelevanceModel.scalarFeatures($0.0) }
            for f in 0..<mean.count {
                let m = features.reduce(0) { $0 + $1[f] } / Float(features.count)
                let v = features.reduce(0) { $0 + ($1[f] - m) * ($1[f] - m) } / Float(features.count)
                mean[f] = m
                deviation[f] = v > 1e-8 ? v.squareRoot() : 1
            }
        }
        func examples(_ answers: [Int64]) -> [Example] {
            answers.flatMap { answer in
                (byAnswer[answer] ?? []).map {
                    Example(
                        answer: answer, candidate: $0.0, input: RelevanceModel.input($0.0, query: $0.1, chunk: $0.2, mean: mean, deviation: deviation),
                        label: $0.3)
                }
            }
        }
        let training = examples(order.filter { !heldOut.contains($0) })
        let evaluation = examples(order.filter { heldOut.contains($0) })

        let parameters = fit(training, inputs: 2 * dimensions + RelevanceModel.scalarCount, options: options, rng: &rng)
        let version = (try store.read { db in try Int.fetchOne(db, sql: "SELECT MAX(version) FROM relevance_models") } ?? 0) + 1
        let model = try RelevanceModel(version: version, dimensions: dimensions, hidden: options.hidden, parameters: parameters, mean: mean, deviation: deviation)

        var evaluationByAnswer: [Int64: [Example]] = [:]
        for e in evaluation { evaluationByAnswer[e.answer, default: []].append(e) }
        // Held-out answers ranked by a scorer of their examples.
        func measure(_ scorer: (Example) -> Double) -> RankingMetrics {
            var scoredGroups: [[(Candidate, Bool)]] = []
            for answer in evaluationByAnswer.keys.sorted() {
                scoredGroups.append(
                    (evaluationByAnswer[answer] ?? []).map { e in
                        var c = e.candidate
                        c.score = scorer(e)
                        return (c, e.label)
                    })
            }
            return RankingMetrics.measure(scoredGroups) { $0.score }
        }
        let current = try RelevanceSlot(store: store).current()
        let before: RankingMetrics
        if let current, current.dimensions == dimensions {
            // The model in use has its own standardization: rebuild its inputs from the raw features.
            before = measure { e in
                let row = index.rowOfChunk[e.candidate.chunkID] ?? 0
                let query = byAnswer[e.answer]?.first?.1 ?? []
                return current.probability(e.candidate, query: query, chunk: index.vector(at: row))
            }
        } else {
            before = measure { $0.candidate.fusedScore }
        }
        let after = measure { Double(model.logit($0.input)) }
        let accepted = after.answers > 0 && after.ndcg5 > before.ndcg5

        let trainingAnswers = Set(training.map(\.answer)).count
        let heldOutAnswers = Set(evaluation.map(\.answer)).count
        let metrics: JSONValue = [
            "dimensions": .int(dimensions), "hidden": .int(options.hidden), "seed": .int(Int(truncatingIfNeeded: options.seed)),
            "epochs": .int(options.epochs), "training_answers": .int(trainingAnswers), "held_out_answers": .int(heldOutAnswers),
            "examples": .int(training.count), "compared_with": current.map { .int($0.version) } ?? .string("retrieval"),
            "before": before.json, "after": after.json,
        ]
        try store.write { db in
            try db.execute(
                sql: "INSERT INTO relevance_models(version, created, accepted, metrics, weights) VALUES (?, ?, ?, ?, ?)",
                arguments: [version, Date().timeIntervalSince1970, accepted ? 1 : 0, metrics.text, model.weightsData])
        }
        return TrainingReport(
            version: version, accepted: accepted, comparedWith: current?.version, trainingAnswers: trainingAnswers, heldOutAnswers: heldOutAnswers,
            examples: training.count, before: before, after: after)
    }

    /// Adam on binary cross-entropy; weights start Glorot-uniform from the seeded generator.
    static func fit(_ examples: [Example], inputs: Int, options: TrainingOptions, rng: inout SeededGenerator) -> [Float] {
        let hidden = options.hidden
        let count = RelevanceModel.parameterCount(inputs: inputs, hidden: hidden)
        var p = [Float](repeating: 0, count: count)
        let w1 = 0..<(hidden * inputs)
        let b1 = w1.upperBound
        let w2 = b1 + hidden
        let b2 = w2 + hidden
        let limit1 = (6 / Float(inputs + hidden)).squareRoot()
        for i in w1 { p[i] = rng.uniform(-limit1, limit1) }
        let limit2 = (6 / Float(hidden + 1)).squareRoot()
        for j in 0..<hidden { p[w2 + j] = rng.uniform(-limit2, limit2) }
        guard !examples.isEmpty else { return p }

        var m = [Float](repeating: 0, count: count)
        var v = [Float](repeating: 0, count: count)
        var g = [Float](repeating: 0, count: count)
        var h = [Float](repeating: 0, count: hidden)
        let (beta1, beta2, epsilon): (Float, Float, Float) = (0.9, 0.999, 1e-8)
        // Positives are rarer than negatives: weight them so each class carries half the loss.
        let positives = max(1, examples.filter(\.label).count)
        let negatives = max(1, examples.count - positives)
        let positiveWeight = Float(examples.count) / Float(2 * positives)
        let negativeWeight = Float(examples.count) / Float(2 * negatives)
        var step: Float = 0
        var order = Array(examples.indices)
        for _ in 0..<options.epochs {
            rng.shuffle(&order)
            for start in stride(from: 0, to: order.count, by: options.batchSize) {
                let batch = order[start..<min(order.count, start + options.batchSize)]
                for i in g.indices { g[i] = 0 }
                for index in batch {
                    let e = examples[index]
                    let x = e.input
                    var z = p[b2]
                    for j in 0..<hidden {
                        var a = p[b1 + j]
                        let row = j * inputs
                        for i in 0..<inputs { a += p[row + i] * x[i] }
                        h[j] = max(0, a)
                        z += p[w2 + j] * h[j]
                    }
                    let probability = 1 / (1 + exp(-z))
                    let dz = (probability - (e.label ? 1 : 0)) * (e.label ? positiveWeight : negativeWeight) / Float(batch.count)
                    g[b2] += dz
                    for j in 0..<hidden where h[j] > 0 {
                        g[w2 + j] += dz * h[j]
                        let dh = dz * p[w2 + j]
                        g[b1 + j] += dh
                        let row = j * inputs
                        for i in 0..<inputs { g[row + i] += dh * x[i] }
                    }
                }
                step += 1
                let correction1 = 1 - pow(beta1, step)
                let correction2 = 1 - pow(beta2, step)
                for i in 0..<count {
                    let gradient = g[i] + options.weightDecay * p[i]
                    m[i] = beta1 * m[i] + (1 - beta1) * gradient
                    v[i] = beta2 * v[i] + (1 - beta2) * gradient * gradient
                    p[i] -= options.learningRate * (m[i] / correction1) / ((v[i] / correction2).squareRoot() + epsilon)
                }
            }
        }
        return p
    }
}

/// Uniform draws and a shuffle that stay the same across platforms and Swift releases (the standard library's
/// shuffle may change its algorithm), so the same seed gives the same weights and splits.
extension SeededGenerator {
    public mutating func uniform(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * Float(next() >> 40) / Float(1 << 24)
    }

    /// Fisher–Yates.
    public mutating func shuffle<T>(_ array: inout [T]) {
        guard array.count > 1 else { return }
        for i in stride(from: array.count - 1, to: 0, by: -1) {
            let j = Int(next() % UInt64(i + 1))
            array.swapAt(i, j)
        }
    }
}
