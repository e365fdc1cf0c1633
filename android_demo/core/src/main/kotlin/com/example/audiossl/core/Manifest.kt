package com.example.audiossl.core

import com.example.audiossl.core.Contract.KEY_BATCH_SIZE
import com.example.audiossl.core.Contract.KEY_BYTES
import com.example.audiossl.core.Contract.KEY_CONFIG
import com.example.audiossl.core.Contract.KEY_DELEGATION
import com.example.audiossl.core.Contract.KEY_DTYPE
import com.example.audiossl.core.Contract.KEY_EMBEDDING_DIM
import com.example.audiossl.core.Contract.KEY_EMBED_BATCH
import com.example.audiossl.core.Contract.KEY_ENCODER
import com.example.audiossl.core.Contract.KEY_EXAMPLE_SAMPLES
import com.example.audiossl.core.Contract.KEY_FILE
import com.example.audiossl.core.Contract.KEY_FLEX_OPS
import com.example.audiossl.core.Contract.KEY_FORMAT_VERSION
import com.example.audiossl.core.Contract.KEY_FRONTEND
import com.example.audiossl.core.Contract.KEY_HYPERPARAMETERS
import com.example.audiossl.core.Contract.KEY_IMAGE_SHAPE
import com.example.audiossl.core.Contract.KEY_INPUTS
import com.example.audiossl.core.Contract.KEY_KEY
import com.example.audiossl.core.Contract.KEY_KIND
import com.example.audiossl.core.Contract.KEY_MODE
import com.example.audiossl.core.Contract.KEY_MODEL
import com.example.audiossl.core.Contract.KEY_MULTIMODAL
import com.example.audiossl.core.Contract.KEY_NAME
import com.example.audiossl.core.Contract.KEY_NOTES
import com.example.audiossl.core.Contract.KEY_NUM_PARAMS
import com.example.audiossl.core.Contract.KEY_OPERATORS
import com.example.audiossl.core.Contract.KEY_OPS_SETS
import com.example.audiossl.core.Contract.KEY_OPTIMIZER
import com.example.audiossl.core.Contract.KEY_OUTPUTS
import com.example.audiossl.core.Contract.KEY_PATCH_SAMPLES
import com.example.audiossl.core.Contract.KEY_PATH
import com.example.audiossl.core.Contract.KEY_PRESET
import com.example.audiossl.core.Contract.KEY_QUANTIZATION
import com.example.audiossl.core.Contract.KEY_RANDOM_SEED
import com.example.audiossl.core.Contract.KEY_REPRESENTATIVE_PATCHES
import com.example.audiossl.core.Contract.KEY_ROLE
import com.example.audiossl.core.Contract.KEY_SAMPLE_RATE
import com.example.audiossl.core.Contract.KEY_SHA256
import com.example.audiossl.core.Contract.KEY_SHAPE
import com.example.audiossl.core.Contract.KEY_SIGNATURES
import com.example.audiossl.core.Contract.KEY_SOURCE
import com.example.audiossl.core.Contract.KEY_TASK
import com.example.audiossl.core.Contract.KEY_TASK_CONFIG
import com.example.audiossl.core.Contract.KEY_TENSORFLOW_VERSION
import com.example.audiossl.core.Contract.KEY_TOOLKIT_VERSION
import com.example.audiossl.core.Contract.KEY_TYPE
import com.example.audiossl.core.Contract.KEY_VARIABLES
import com.example.audiossl.core.Contract.KEY_VARIABLE_BYTES
import com.example.audiossl.core.Contract.KEY_VERIFICATION
import com.example.audiossl.core.Contract.MANIFEST_FORMAT_VERSION
import com.example.audiossl.core.Contract.SIGNATURE_EMBED
import com.example.audiossl.core.Contract.SIGNATURE_GET_WEIGHTS
import com.example.audiossl.core.Contract.SIGNATURE_SET_WEIGHTS
import com.example.audiossl.core.Contract.SIGNATURE_TRAIN
import com.example.audiossl.core.Contract.TENSOR_EMBEDDING
import com.example.audiossl.core.Contract.TENSOR_LOSS
import com.example.audiossl.core.Contract.TENSOR_OK
import com.example.audiossl.core.Contract.TENSOR_WAVEFORM
import com.example.audiossl.core.Contract.VALUE_DTYPE_FLOAT32
import com.example.audiossl.core.Contract.VALUE_KIND_TRAINING
import com.example.audiossl.core.Contract.VALUE_MODE_BUILTIN
import com.example.audiossl.core.Contract.VALUE_ROLE_WEIGHT

/** A manifest is unusable by the app (its message says which entry and why). */
class ManifestException(message: String) : RuntimeException(message)

// The classes below mirror `export/manifest.py` field for field (Kotlin names in camelCase);
// `tests/test_android_contract.py` fails when either side has a field the other lacks. Fields
// whose content varies by model (configurations, measurements, provenance) stay JSON objects.

/**
 * The `.tflite` file a manifest describes.
 *
 * @property name Its file name.
 * @property bytes Its size.
 * @property sha256 Hex sha256 of its content; weight files are bound to it.
 */
class FileInfo(val name: String, val bytes: Long, val sha256: String)

/**
 * The encoder inside the model.
 *
 * @property preset Name of the encoder preset.
 * @property config The encoder configuration.
 * @property numParams Its parameter count.
 */
class EncoderInfo(val preset: String, val config: JsonObject, val numParams: Long)

/**
 * The model the file was converted from.
 *
 * @property task The SSL task.
 * @property taskConfig The task configuration.
 * @property encoder The encoder.
 * @property frontend The audio front-end configuration.
 * @property sampleRate Audio sample rate in Hz (the microphone records at this rate).
 * @property exampleSamples Samples of one training example.
 * @property patchSamples Samples of one `embed` input row.
 * @property embeddingDim Width `D` of an embedding.
 * @property multimodal Whether the model also has image signatures (false when absent).
 * @property imageShape `[H, W]` of an image (multimodal models only).
 */
class ModelInfo(
  val task: String,
  val taskConfig: JsonObject,
  val encoder: EncoderInfo,
  val frontend: JsonObject,
  val sampleRate: Int,
  val exampleSamples: Int,
  val patchSamples: Int,
  val embeddingDim: Int,
  val multimodal: Boolean,
  val imageShape: List<Int>?
)

/**
 * A tensor of a signature as the manifest lists it.
 *
 * @property name The tensor's name in the signature.
 * @property dtype NumPy dtype name, e.g. `float32`.
 * @property shape Dimensions; -1 marks a dynamic one.
 */
class TensorSpec(val name: String, val dtype: String, val shape: List<Int>)

/**
 * One signature of the model.
 *
 * @property name The signature key.
 * @property inputs Input tensors by name.
 * @property outputs Output tensors by name.
 */
class SignatureSpec(
  val name: String,
  val inputs: Map<String, TensorSpec>,
  val outputs: Map<String, TensorSpec>
)

/**
 * A variable of the training model (a weight or optimizer state).
 *
 * @property name The toolkit's name, e.g. `encoder/block0/conv_1x3/kernel`; weight files use it.
 * @property key Its tensor name in `get_weights` / `set_weights`.
 * @property role `weight` or `optimizer`.
 * @property shape Dimensions (static).
 * @property dtype NumPy dtype name.
 * @property bytes Size of its value.
 */
class VariableSpec(
  val name: String,
  val key: String,
  val role: String,
  val shape: List<Int>,
  val dtype: String,
  val bytes: Long
) {
  /** Number of float32 elements. */
  val size: Int get() = shape.fold(1) { product, d -> product * d }

  /** Whether this is a model weight (part of the federated update), not optimizer state. */
  val isWeight: Boolean get() = role == VALUE_ROLE_WEIGHT
}

/**
 * The on-device optimizer.
 *
 * @property name Its name.
 * @property hyperparameters Its hyperparameters by name.
 */
class OptimizerInfo(val name: String, val hyperparameters: JsonObject)

/**
 * How the weights of the file are stored.
 *
 * @property type `float32` for a training model.
 * @property notes Embed-only variants: the conversion route taken.
 * @property representativePatches `int8` variants: the patches that calibrated it.
 */
class QuantizationInfo(val type: String, val notes: String?, val representativePatches: Int?)

/**
 * The `manifest.json` of an exported training model: everything the app needs to know about the
 * `.tflite` file (signatures, sizes, variables), so the app hard-codes none of it. The fields are
 * those of the toolkit's `export.manifest.Manifest`, in file order; the app reads training models
 * only, so the fields an embed-only model lacks are not optional here.
 *
 * @property formatVersion Version of the manifest layout.
 * @property kind `training` (the app rejects embed-only models).
 * @property path The file's path in the export directory.
 * @property file Name, size and sha256 of `model.tflite`.
 * @property toolkitVersion Version of the toolkit that wrote it.
 * @property tensorflowVersion Version of TensorFlow that converted it.
 * @property model The model it was converted from.
 * @property embedBatch `dynamic`: `embed` takes any number of rows.
 * @property operators TFLite operators in the file.
 * @property flexOps Select-TF operators (empty: the app cannot run others).
 * @property opsSets The converter's target op sets.
 * @property source Provenance of the weights.
 * @property mode `builtin` (the app runs nothing else).
 * @property quantization How the weights are stored.
 * @property signatures Every signature by name.
 * @property batchSize Static batch size `B` of `train`.
 * @property exampleSamples Samples `S` of one training example (one buffered window).
 * @property optimizer The on-device optimizer.
 * @property randomSeed Seed of the in-graph random ops.
 * @property variables Every variable, in `get_weights` order.
 * @property variableBytes Bytes of all variables.
 * @property verification What the export checked on the file.
 * @property delegation What XNNPACK delegated, per signature (absent if not measured).
 */
class Manifest(
  val formatVersion: Int,
  val kind: String,
  val path: String,
  val file: FileInfo,
  val toolkitVersion: String,
  val tensorflowVersion: String,
  val model: ModelInfo,
  val embedBatch: String,
  val operators: List<String>,
  val flexOps: List<String>,
  val opsSets: List<String>,
  val source: JsonObject,
  val mode: String,
  val quantization: QuantizationInfo,
  val signatures: Map<String, SignatureSpec>,
  val batchSize: Int,
  val exampleSamples: Int,
  val optimizer: OptimizerInfo,
  val randomSeed: Long,
  val variables: List<VariableSpec>,
  val variableBytes: Long,
  val verification: JsonObject,
  val delegation: JsonObject?
) {
  /** Hex sha256 of `model.tflite`; weight files are bound to it. */
  val modelSha256: String get() = file.sha256

  /** Audio sample rate in Hz (the microphone records at this rate). */
  val sampleRate: Int get() = model.sampleRate

  /** Samples of one `embed` input row. */
  val patchSamples: Int get() = model.patchSamples

  /** Width `D` of an embedding. */
  val embeddingDim: Int get() = model.embeddingDim

  /** Task and encoder preset, for display. */
  val description: String get() = "${model.task}, ${model.encoder.preset} encoder"

  /** The signature [name]; throws [ManifestException] if the model has none. */
  fun signature(name: String): SignatureSpec =
    signatures[name] ?: throw ManifestException("the model has no '$name' signature")

  /** The model weights (not the optimizer state), in `get_weights` order. */
  val weights: List<VariableSpec> get() = variables.filter { it.isWeight }

  companion object {
    /**
     * Parses a manifest and checks it describes a training model the app can drive.
     *
     * @param text The content of `manifest.json`.
     * @throws ManifestException A key is missing or mistyped, the layout version is not the
     *   app's, the model is not a builtin-only training export, a signature the app calls is
     *   missing, or a tensor's shape disagrees with the sizes.
     */
    fun parse(text: String): Manifest {
      try {
        return check(read(Json.parseObject(text, "manifest")))
      } catch (e: JsonException) {
        throw ManifestException(e.message ?: "malformed manifest")
      }
    }

    private fun read(root: JsonObject): Manifest {
      val version = root.int(KEY_FORMAT_VERSION)
      if (version != MANIFEST_FORMAT_VERSION) {
        throw ManifestException(
          "manifest.$KEY_FORMAT_VERSION is $version: this app reads layout $MANIFEST_FORMAT_VERSION"
        )
      }
      val kind = root.string(KEY_KIND)
      if (kind != VALUE_KIND_TRAINING) {
        throw ManifestException("manifest.$KEY_KIND is '$kind': the app needs a '$VALUE_KIND_TRAINING' model")
      }
      val mode = root.string(KEY_MODE)
      if (mode != VALUE_MODE_BUILTIN) {
        throw ManifestException(
          "manifest.$KEY_MODE is '$mode': the app bundles the plain TFLite runtime and needs a " +
            "'$VALUE_MODE_BUILTIN' export"
        )
      }
      val signatures = root.obj(KEY_SIGNATURES).let { table ->
        table.keys.associateWith { name ->
          val entry = table.obj(name)
          SignatureSpec(name, tensors(entry.obj(KEY_INPUTS)), tensors(entry.obj(KEY_OUTPUTS)))
        }
      }
      val file = root.obj(KEY_FILE)
      val quantization = root.obj(KEY_QUANTIZATION)
      val optimizer = root.obj(KEY_OPTIMIZER)
      return Manifest(
        formatVersion = version,
        kind = kind,
        path = root.string(KEY_PATH),
        file = FileInfo(file.string(KEY_NAME), file.long(KEY_BYTES), file.string(KEY_SHA256)),
        toolkitVersion = root.string(KEY_TOOLKIT_VERSION),
        tensorflowVersion = root.string(KEY_TENSORFLOW_VERSION),
        model = modelInfo(root.obj(KEY_MODEL)),
        embedBatch = root.string(KEY_EMBED_BATCH),
        operators = root.strings(KEY_OPERATORS),
        flexOps = root.strings(KEY_FLEX_OPS),
        opsSets = root.strings(KEY_OPS_SETS),
        source = root.obj(KEY_SOURCE),
        mode = mode,
        quantization = QuantizationInfo(
          quantization.string(KEY_TYPE),
          if (quantization.has(KEY_NOTES)) quantization.string(KEY_NOTES) else null,
          if (quantization.has(KEY_REPRESENTATIVE_PATCHES)) quantization.int(KEY_REPRESENTATIVE_PATCHES) else null
        ),
        signatures = signatures,
        batchSize = root.int(KEY_BATCH_SIZE),
        exampleSamples = root.int(KEY_EXAMPLE_SAMPLES),
        optimizer = OptimizerInfo(optimizer.string(KEY_NAME), optimizer.obj(KEY_HYPERPARAMETERS)),
        randomSeed = root.long(KEY_RANDOM_SEED),
        variables = root.objects(KEY_VARIABLES).map {
          VariableSpec(
            it.string(KEY_NAME), it.string(KEY_KEY), it.string(KEY_ROLE), it.ints(KEY_SHAPE),
            it.string(KEY_DTYPE), it.long(KEY_BYTES)
          )
        },
        variableBytes = root.long(KEY_VARIABLE_BYTES),
        verification = root.obj(KEY_VERIFICATION),
        delegation = if (root.has(KEY_DELEGATION)) root.obj(KEY_DELEGATION) else null
      )
    }

    private fun modelInfo(model: JsonObject): ModelInfo {
      val encoder = model.obj(KEY_ENCODER)
      return ModelInfo(
        task = model.string(KEY_TASK),
        taskConfig = model.obj(KEY_TASK_CONFIG),
        encoder = EncoderInfo(encoder.string(KEY_PRESET), encoder.obj(KEY_CONFIG), encoder.long(KEY_NUM_PARAMS)),
        frontend = model.obj(KEY_FRONTEND),
        sampleRate = model.int(KEY_SAMPLE_RATE),
        exampleSamples = model.int(KEY_EXAMPLE_SAMPLES),
        patchSamples = model.int(KEY_PATCH_SAMPLES),
        embeddingDim = model.int(KEY_EMBEDDING_DIM),
        multimodal = model.has(KEY_MULTIMODAL) && model.boolean(KEY_MULTIMODAL),
        imageShape = if (model.has(KEY_IMAGE_SHAPE)) model.ints(KEY_IMAGE_SHAPE) else null
      )
    }

    private fun tensors(table: JsonObject): Map<String, TensorSpec> =
      table.keys.associateWith { name ->
        val entry = table.obj(name)
        TensorSpec(name, entry.string(KEY_DTYPE), entry.ints(KEY_SHAPE))
      }

    private fun expectTensor(
      signature: SignatureSpec,
      tensors: Map<String, TensorSpec>,
      name: String,
      shape: List<Int>
    ) {
      val spec = tensors[name]
        ?: throw ManifestException("signature '${signature.name}' has no tensor '$name'")
      if (spec.dtype != VALUE_DTYPE_FLOAT32 || spec.shape != shape) {
        throw ManifestException(
          "'${signature.name}' tensor '$name' is ${spec.dtype} ${spec.shape}, expected " +
            "$VALUE_DTYPE_FLOAT32 $shape"
        )
      }
    }

    private fun check(manifest: Manifest): Manifest {
      val train = manifest.signature(SIGNATURE_TRAIN)
      expectTensor(train, train.inputs, TENSOR_WAVEFORM, listOf(manifest.batchSize, manifest.exampleSamples))
      expectTensor(train, train.outputs, TENSOR_LOSS, emptyList())
      val embed = manifest.signature(SIGNATURE_EMBED)
      expectTensor(embed, embed.inputs, TENSOR_WAVEFORM, listOf(-1, manifest.patchSamples))
      expectTensor(embed, embed.outputs, TENSOR_EMBEDDING, listOf(-1, manifest.embeddingDim))
      val getWeights = manifest.signature(SIGNATURE_GET_WEIGHTS)
      val setWeights = manifest.signature(SIGNATURE_SET_WEIGHTS)
      for (variable in manifest.variables) {
        expectTensor(getWeights, getWeights.outputs, variable.key, variable.shape)
        expectTensor(setWeights, setWeights.inputs, variable.key, variable.shape)
      }
      if (getWeights.outputs.size != manifest.variables.size) {
        throw ManifestException(
          "'$SIGNATURE_GET_WEIGHTS' has ${getWeights.outputs.size} outputs for " +
            "${manifest.variables.size} variables"
        )
      }
      if (!setWeights.outputs.containsKey(TENSOR_OK)) {
        throw ManifestException("signature '$SIGNATURE_SET_WEIGHTS' has no tensor '$TENSOR_OK'")
      }
      return manifest
    }
  }
}
