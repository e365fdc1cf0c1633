package com.example.audiossl.demo

import android.content.Context
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.util.AttributeSet
import android.view.View
import kotlin.math.abs
import kotlin.math.max
import kotlin.math.min

/** Draws an embedding as one bar per dimension around a centre line, scaled to its largest value. */
class EmbeddingView @JvmOverloads constructor(
  context: Context,
  attrs: AttributeSet? = null
) : View(context, attrs) {
  private var values = FloatArray(0)
  private val positive = Paint().apply { color = Color.rgb(0x1e, 0x88, 0xe5) }
  private val negative = Paint().apply { color = Color.rgb(0xe5, 0x39, 0x35) }

  /** Shows [embedding] (copied). */
  fun show(embedding: FloatArray) {
    values = embedding.copyOf()
    invalidate()
  }

  override fun onDraw(canvas: Canvas) {
    super.onDraw(canvas)
    if (values.isEmpty()) return
    val scale = values.maxOf { abs(it) }.takeIf { it > 0f } ?: 1f
    val barWidth = width.toFloat() / values.size
    val middle = height / 2f
    for ((i, value) in values.withIndex()) {
      val top = middle - value / scale * middle
      canvas.drawRect(
        i * barWidth, min(middle, top), (i + 1) * barWidth - barWidth / BAR_GAP_FRACTION, max(middle, top),
        if (value >= 0f) positive else negative
      )
    }
  }

  private companion object {
    const val BAR_GAP_FRACTION = 5f
  }
}
