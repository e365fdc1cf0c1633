package com.example.audiossl.core

/** Sizes of the fake model: deliberately unlike any real export's. */
object FakeSizes {
  const val BATCH = 2
  const val EXAMPLE = 12
  const val RATE = 8000
  const val PATCH = 5
  const val DIM = 3
  const val SHA = "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
}

/** A manifest with the fake model's sizes; [getWeightsInputs] lists `get_weights` inputs (JSON). */
fun fakeManifestJson(
  mode: String = "builtin",
  getWeightsInputs: String = "",
  trainShape: String = "[2, 12]",
  kind: String = "training",
  formatVersion: Int = 1
): String {
  val variables = listOf(
    Triple("encoder/w", "encoder__w", "[2, 3]") to "weight",
    Triple("head/b", "head__b", "[3]") to "weight",
    Triple("optimizer/step", "optimizer__step", "[]") to "optimizer"
  )
  val tensorTable = variables.joinToString(", ") { (v, _) ->
    "\"${v.second}\": {\"dtype\": \"float32\", \"shape\": ${v.third}}"
  }
  val variableList = variables.joinToString(", ") { (v, role) ->
    "{\"name\": \"${v.first}\", \"key\": \"${v.second}\", \"role\": \"$role\", \"shape\": ${v.third}, " +
      "\"dtype\": \"float32\", \"bytes\": 4}"
  }
  return """
    {"format_version": $formatVersion, "kind": "$kind", "path": "training/model.tflite",
     "file": {"name": "model.tflite", "bytes": 10, "sha256": "${FakeSizes.SHA}"},
     "toolkit_version": "test", "tensorflow_version": "test",
     "model": {"task": "audio2vec_cbow", "task_config": {},
               "encoder": {"preset": "tiny", "config": {}, "num_params": 9},
               "frontend": {}, "sample_rate": ${FakeSizes.RATE},
               "example_samples": ${FakeSizes.EXAMPLE}, "patch_samples": ${FakeSizes.PATCH},
               "embedding_dim": ${FakeSizes.DIM}, "multimodal": false},
     "embed_batch": "dynamic", "operators": ["ADD"], "flex_ops": [], "ops_sets": ["TFLITE_BUILTINS"],
     "source": {"kind": "fresh"}, "mode": "$mode", "quantization": {"type": "float32"},
     "batch_size": ${FakeSizes.BATCH}, "example_samples": ${FakeSizes.EXAMPLE},
     "optimizer": {"name": "sgd", "hyperparameters": {"learning_rate": 0.1}}, "random_seed": 0,
     "signatures": {
       "train": {"inputs": {"waveform": {"dtype": "float32", "shape": $trainShape}},
                 "outputs": {"loss": {"dtype": "float32", "shape": []}}},
       "embed": {"inputs": {"waveform": {"dtype": "float32", "shape": [-1, ${FakeSizes.PATCH}]}},
                 "outputs": {"embedding": {"dtype": "float32", "shape": [-1, ${FakeSizes.DIM}]}}},
       "get_weights": {"inputs": {$getWeightsInputs}, "outputs": {$tensorTable}},
       "set_weights": {"inputs": {$tensorTable}, "outputs": {"ok": {"dtype": "int32", "shape": []}}}
     },
     "variables": [$variableList], "variable_bytes": 12, "verification": {}}
  """.trimIndent()
}

/**
 * An interpreter stand-in: `train` halves every weight and returns their squared sum; `embed`
 * returns each row's mean, max and min; `get_weights` / `set_weights` read and assign.
 */
class FakeRunner(override val requiresInputs: Boolean = false) : SignatureRunner {
  val state = linkedMapOf(
    "encoder__w" to floatArrayOf(1f, 2f, 3f, 4f, 5f, 6f),
    "head__b" to floatArrayOf(0.5f, -0.5f, 1f),
    "optimizer__step" to floatArrayOf(0f)
  )
  private val shapes = mapOf("encoder__w" to intArrayOf(2, 3), "head__b" to intArrayOf(3), "optimizer__step" to intArrayOf())
  val calls = ArrayList<String>()
  var closed = false

  override fun run(signature: String, inputs: Map<String, Tensor>): Map<String, Tensor> {
    calls.add(signature)
    return when (signature) {
      "train" -> {
        var loss = 0f
        for (key in listOf("encoder__w", "head__b")) {
          val w = state.getValue(key)
          for (i in w.indices) {
            loss += w[i] * w[i]
            w[i] *= 0.5f
          }
        }
        state.getValue("optimizer__step")[0] += 1f
        mapOf("loss" to Tensor(intArrayOf(), floatArrayOf(loss)))
      }
      "embed" -> {
        val x = inputs.getValue("waveform")
        val rows = x.shape[0]
        val width = x.shape[1]
        val out = FloatArray(rows * FakeSizes.DIM)
        for (r in 0 until rows) {
          val row = x.data.copyOfRange(r * width, (r + 1) * width)
          out[r * FakeSizes.DIM] = row.average().toFloat()
          out[r * FakeSizes.DIM + 1] = row.fold(Float.NEGATIVE_INFINITY) { a, b -> maxOf(a, b) }
          out[r * FakeSizes.DIM + 2] = row.fold(Float.POSITIVE_INFINITY) { a, b -> minOf(a, b) }
        }
        mapOf("embedding" to Tensor(intArrayOf(rows, FakeSizes.DIM), out))
      }
      "get_weights" -> state.mapValues { Tensor(shapes.getValue(it.key), it.value.copyOf()) }
      "set_weights" -> {
        val finite = inputs.values.all { t -> t.data.all { it.isFinite() } }
        if (finite) for ((key, tensor) in inputs) state[key] = tensor.data.copyOf()
        mapOf("ok" to Tensor(intArrayOf(), floatArrayOf(if (finite) 1f else 0f)))
      }
      else -> throw IllegalArgumentException("no signature $signature")
    }
  }

  override fun close() {
    closed = true
  }
}

/** A tone-like window of [size] samples (loud enough to be buffered). */
fun tone(size: Int, phase: Float = 0f): FloatArray = FloatArray(size) { (0.3 * Math.sin(0.7 * it + phase)).toFloat() }
