import ANELM
import Foundation
import XCTest

/// Adapters on a GGUF base: the tiny Llama written here as llama.cpp's converter writes a `llama` GGUF (f32, q/k rows in
/// RoPE-pair order), then the PEFT, MLX-LM and GGUF adapters on it against PEFT's logits. The PEFT and MLX-LM adapters
/// name transformers' layers and meet llama.cpp's names and q/k row order here; the GGUF adapter matches them natively.
final class LoRAGGUFBaseTests: XCTestCase {
    func testAdaptersOnALlamaGGUF() throws {
        let gguf = try Self.tinyLlamaGGUF()
        let fixture = try XCTUnwrap(try LoRAFixture.load().cases.first { $0.name == "tiny-llama-peft" })
        let expected = try LoRAFixture.floats(fixture.logits)
        for adapter in ["lora/tiny-llama-peft", "lora/tiny-llama-mlx", "lora/tiny-llama-lora.gguf"] {
            for merge in [false, true] {
                let options = LoadOptions(precision: .f32, lora: [LoRAChoice(path: LoRAFixture.path(adapter))], loraMerge: merge)
                let model = try ModelRegistry.build(.gguf(try GGUFFile(path: gguf.path)), options: options, pool: ThreadPool(threads: 1))
                let logits = try model.forward(fixture.prompt_ids, state: model.makeState(), allPositions: true)
                XCTAssertEqual(logits.count, expected.count)
                let worst = zip(logits, expected).map { abs($0 - $1) }.max() ?? .infinity
                XCTAssertLessThan(worst, LoRATests.tolerance, "\(adapter) on the GGUF base\(merge ? ", merged" : ""): max |Δlogit| \(worst)")
            }
        }
    }

    /// tiny-llama as a `llama` GGUF: llama.cpp's tensor names and q/k permutation, f32, the hyper-parameters its loader reads.
    static func tinyLlamaGGUF() throws -> URL {
        let folder = try HFModelFolder(path: LoRAFixture.path("models/tiny-llama"))
        let config = try XCTUnwrap(folder.config.objectValue)
        func int(_ key: String) throws -> Int { try XCTUnwrap(config[key]?.integerValue, key) }
        let layers = try int("num_hidden_layers")
        let heads = try int("num_attention_heads")
        let kvHeads = try int("num_key_value_heads")
        var writer = GGUFWriter()
        writer.metadata = [
            ("general.architecture", .string("llama")), ("llama.block_count", .u32(UInt32(layers))),
            ("llama.embedding_length", .u32(UInt32(try int("hidden_size")))), ("llama.feed_forward_length", .u32(UInt32(try int("intermediate_size")))),
            ("llama.attention.head_count", .u32(UInt32(heads))), ("llama.attention.head_count_kv", .u32(UInt32(kvHeads))),
            ("llama.attention.key_length", .u32(UInt32(try int("head_dim")))), ("llama.attention.value_length", .u32(UInt32(try int("head_dim")))),
            ("llama.attention.layer_norm_rms_epsilon", .f32(Float(try XCTUnwrap(config["rms_norm_eps"]?.numberValue)))),
            ("llama.rope.freq_base", .f32(Float(config["rope_theta"]?.numberValue ?? config["rope_parameters"]?["rope_theta"]?.numberValue ?? 10000))),
            ("llama.context_length", .u32(UInt32(try int("max_position_embeddings")))), ("llama.vocab_size", .u32(UInt32(try int("vocab_size")))),
        ]
        let headDim = try int("head_dim")
        func add(_ hf: String, _ gguf: String, permuteHeads: Int? = nil) throws {
            let tensor = try XCTUnwrap(try folder.tensors.tensor(named: hf), hf)
            let m = try WeightMatrix.dequantized(tensor)
            let values = Array(UnsafeBufferPointer(start: m.data.assumingMemoryBound(to: Float.self), count: m.rows * m.cols))
            var out = values
            if let heads = permuteHeads {
                // convert_hf_to_gguf.py's permute: within each head, row 2i + j comes from row j·headDim/2 + i.
                for r in 0..<(heads * headDim) {
                    let head = r / headDim
                    let within = r % headDim
                    let source = head * headDim + (within % 2) * (headDim / 2) + within / 2
                    for c in 0..<m.cols { out[r * m.cols + c] = values[source * m.cols + c] }
                }
            }
            let dims = tensor.shape.count == 1 ? [UInt64(m.cols)] : [UInt64(m.cols), UInt64(m.rows)]
            writer.tensors.append((gguf, dims, 0, floatBytes(out)))
        }
        try add("model.embed_tokens.weight", "token_embd.weight")
        try add("model.norm.weight", "output_norm.weight")
        try add("lm_head.weight", "output.weight")
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            let g = "blk.\(l)."
            try add(p + "input_layernorm.weight", g + "attn_norm.weight")
            try add(p + "self_attn.q_proj.weight", g + "attn_q.weight", permuteHeads: heads)
            try add(p + "self_attn.k_proj.weight", g + "attn_k.weight", permuteHeads: kvHeads)
            try add(p + "self_attn.v_proj.weight", g + "attn_v.weight")
            try add(p + "self_attn.o_proj.weight", g + "attn_output.weight")
            try add(p + "post_attention_layernorm.weight", g + "ffn_norm.weight")
            try add(p + "mlp.gate_proj.weight", g + "ffn_gate.weight")
            try add(p + "mlp.up_proj.weight", g + "ffn_up.weight")
            try add(p + "mlp.down_proj.weight", g + "ffn_down.weight")
        }
        let url = temporaryFile("tiny-llama-f32.gguf")
        try writer.write(to: url)
        return url
    }
}
