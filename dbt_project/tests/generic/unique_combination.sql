{#- Fails for each combination of `columns` that occurs more than once (nulls compared as values). -#}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
group by all
having count(*) > 1
{% endtest %}
