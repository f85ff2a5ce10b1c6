import Foundation
import XCTest

/// `--lora PATH[:SCALE]` and `--lora-merge` on the command line.
extension CLITests {
    func testLoRAOptions() throws {
        let model = LoRAFixture.path("models/tiny-llama")
        let adapter = LoRAFixture.path("lora/tiny-llama-peft")
        let common = ["generate", "--model", model, "--prompt", "The quick brown fox", "--max-tokens", "6", "--ignore-eos", "--precision", "f32"]
        let base = try run(common)
        let side = try run(common + ["--lora", adapter])
        let merged = try run(common + ["--lora", adapter, "--lora-merge"])
        let off = try run(common + ["--lora", adapter + ":0"])
        for r in [base, side, merged, off] { XCTAssertEqual(r.status, 0, r.stderr) }
        XCTAssertEqual(side.stdout, merged.stdout)
        XCTAssertEqual(off.stdout, base.stdout)
        XCTAssertNotEqual(side.stdout, base.stdout)
        try assertCleanError(common + ["--lora", LoRAFixture.path("lora/tiny-gemma3-peft")], contains: "does not fit the model")
        try assertCleanError(common + ["--lora-merge"], contains: "--lora-merge needs at least one --lora")
        try assertCleanError(common + ["--lora", "/nonexistent"], contains: "no LoRA adapter at /nonexistent")
    }
}
