package com.example.audiossl.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class JsonAndManifestTest {

  private inline fun <reified T : Throwable> failure(block: () -> Unit): T {
    try {
      block()
    } catch (e: Throwable) {
      if (e is T) return e
      throw e
    }
    fail("expected ${T::class.java.simpleName}")
    throw AssertionError()
  }

  @Test
  fun parsesNestedValuesInOrder() {
    val root = Json.parseObject("""{"b": {"x": [1, -2, 3]}, "a": "s\"\u00e9\n", "f": 1.5e3, "t": true, "n": null}""", "doc")
    assertEquals(listOf("b", "a", "f", "t", "n"), root.keys.toList())
    assertEquals(listOf(1, -2, 3), root.obj("b").ints("x"))
    assertEquals("s\"\u00e9\n", root.string("a"))
    assertEquals(1500.0, root.values["f"])
    assertTrue(root.values.containsKey("n") && root.values["n"] == null)
  }

  @Test
  fun errorsNameThePath() {
    val root = Json.parseObject("""{"model": {"patch_samples": "many"}}""", "manifest")
    val e = failure<JsonException> { root.obj("model").int("patch_samples") }
    assertEquals("manifest.model.patch_samples: expected an integer, found a string", e.message)
    assertEquals("manifest.model.width: missing", failure<JsonException> { root.obj("model").int("width") }.message)
  }

  @Test
  fun rejectsMalformedJson() {
    for (text in listOf("{", "{\"a\": 01}", "{\"a\": 1,}", "{\"a\": 1} x", "[1]", "{\"a\": 1, \"a\": 2}", "{\"a\": tru}")) {
      failure<JsonException> { Json.parseObject(text, "doc") }
    }
  }

  @Test
  fun readsEverySizeFromTheManifest() {
    val manifest = Manifest.parse(fakeManifestJson())
    assertEquals(FakeSizes.BATCH, manifest.batchSize)
    assertEquals(FakeSizes.EXAMPLE, manifest.exampleSamples)
    assertEquals(FakeSizes.RATE, manifest.sampleRate)
    assertEquals(FakeSizes.PATCH, manifest.patchSamples)
    assertEquals(FakeSizes.DIM, manifest.embeddingDim)
    assertEquals(FakeSizes.SHA, manifest.modelSha256)
    assertEquals(listOf("encoder/w", "head/b", "optimizer/step"), manifest.variables.map { it.name })
    assertEquals(listOf("encoder/w", "head/b"), manifest.weights.map { it.name })
    assertEquals(6, manifest.variables[0].size)
    assertEquals(1, manifest.variables[2].size)
    assertEquals("audio2vec_cbow, tiny encoder", manifest.description)
  }

  @Test
  fun readsEveryFieldOfTheLayout() {
    val manifest = Manifest.parse(fakeManifestJson())
    assertEquals(1, manifest.formatVersion)
    assertEquals("training/model.tflite", manifest.path)
    assertEquals(10L, manifest.file.bytes)
    assertEquals(9L, manifest.model.encoder.numParams)
    assertEquals(false, manifest.model.multimodal)
    assertEquals(null, manifest.model.imageShape)
    assertEquals(listOf("ADD"), manifest.operators)
    assertEquals(emptyList<String>(), manifest.flexOps)
    assertEquals("float32", manifest.quantization.type)
    assertEquals(null, manifest.quantization.notes)
    assertEquals("sgd", manifest.optimizer.name)
    assertEquals(0.1, manifest.optimizer.hyperparameters.values["learning_rate"])
    assertEquals(listOf(4L, 4L, 4L), manifest.variables.map { it.bytes })
    assertEquals(12L, manifest.variableBytes)
    assertEquals(null, manifest.delegation)
  }

  @Test
  fun rejectsManifestsTheAppCannotDrive() {
    assertTrue(failure<ManifestException> { Manifest.parse(fakeManifestJson(mode = "flex")) }.message!!.contains("builtin"))
    assertEquals(
      "manifest.kind is 'embed': the app needs a 'training' model",
      failure<ManifestException> { Manifest.parse(fakeManifestJson(kind = "embed")) }.message
    )
    assertEquals(
      "manifest.format_version is 2: this app reads layout 1",
      failure<ManifestException> { Manifest.parse(fakeManifestJson(formatVersion = 2)) }.message
    )
    val shape = failure<ManifestException> { Manifest.parse(fakeManifestJson(trainShape = "[3, 12]")) }
    assertEquals("'train' tensor 'waveform' is float32 [3, 12], expected float32 [2, 12]", shape.message)
    val renamed = fakeManifestJson().replace("\"embed\":", "\"embed_v2\":")
    assertEquals("the model has no 'embed' signature", failure<ManifestException> { Manifest.parse(renamed) }.message)
  }
}
